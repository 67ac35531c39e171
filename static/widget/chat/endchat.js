/*
 * "End chat" in a conversation with the AI (README "Satisfaction and transcripts"): one small control
 * under the log. The server closes the conversation (an `end_chat` action) and its state frame brings
 * the resolved card: "How did we do?", the transcript, "Start new conversation". Shown once the
 * visitor has written something (survey.css hides it before, as the server refuses it then).
 */

import { T } from "./config.js";
import { sendAction } from "./protocol.js";
import { S } from "./state.js";
import { el } from "./util.js";

export function endChatBar() {
  const bar = el("div", "pv-endchat");
  const button = el("button", "pv-link pv-endchat-btn", T.endChat);
  button.type = "button";
  button.addEventListener("click", () => {
    button.disabled = true;
    sendAction({ type: "end_chat", conversation: S.convId }, { onError: () => (button.disabled = false) });
  });
  bar.append(button);
  return bar;
}
