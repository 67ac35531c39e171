/*
 * Config and visitor-facing strings, read once from the frame's json_script config (README
 * "Widget protocol"). Nothing here changes after load, and this module imports nothing, so every
 * other module can rely on these values being ready.
 */

export const CONFIG = readConfig();
const DEFAULT_ACCENT = "#4f46e5";
export const ACCENT = safeColor(CONFIG.accentColor) || DEFAULT_ACCENT;
export const MAX_LEN = Number(CONFIG.maxLength) > 0 ? Math.floor(Number(CONFIG.maxLength)) : 2000;
export const API = String(CONFIG.apiBase || "/api/widget").replace(/\/+$/, "");
export const WS_PATH = String(CONFIG.wsPath || "/ws/widget/");
export const TOKEN_KEY = `pivra:${CONFIG.publicKey}:token`;
export const PARENT_ORIGIN = typeof CONFIG.parentOrigin === "string" ? CONFIG.parentOrigin : "";
export const EMBEDDED = window.parent !== window;
export const BOT_NAME = String(CONFIG.name || "Assistant");

// Visitor-facing defaults (the product brief's exact wording); a chatbot may override them via
// config.strings. State-specific texts (waiting / busy messages) come from the state snapshot.
export const T = Object.assign(
  {
    statusAi: "AI assistant",
    statusPending: "Connecting you to the team",
    statusBusy: "Team unavailable right now",
    statusClosed: "Conversation closed",
    statusActiveNoName: "Connected to the team",
    liveBadge: "● Live Agent",
    agentFromTeam: "{agent} from the team",
    teamMember: "Team member",
    you: "You",
    talkToHuman: "Talk to a human",
    offerQuestion: "Would you like to speak with a team member?",
    offerYes: "Yes, connect me",
    offerNo: "No thanks",
    waitingTitle: "Waiting for a team member…",
    waitingDefault: "Connecting you with the team now…",
    transferTitle: "Transferring you to {agent}…",
    transferText: "They'll be with you in a moment.",
    queueNext: "You are next in line",
    queuePosition: "You are number {n} in line",
    queueBeyond: "{n}+ people are ahead of you",
    waitUnderOne: "usually under 1 minute",
    waitUnder: "usually under {n} minutes",
    waitOverHour: "usually over an hour",
    waitFew: "usually a few minutes",
    busyDefault: "Our team is currently busy. Leave your mobile number and we'll get back to you.",
    offlineDefault: "We're not online right now. Leave your mobile number and we'll get back to you.",
    phoneLabel: "Mobile number",
    phoneSubmit: "Send",
    phoneSending: "Sending…",
    phoneRequired: "Please enter your mobile number.",
    phoneInvalid: "Please enter a valid mobile number.",
    phoneThanks: "Thanks — we'll contact you at {phone}",
    continueAi: "Continue with AI",
    continueAiTitle: "Continue chatting with AI",
    resolved: "Conversation resolved ✓",
    resolvedNote: "This conversation is closed. Start a new one to keep chatting.",
    startNew: "Start new conversation",
    ratingQuestion: "How did we do?",
    ratingGood: "Good",
    ratingBad: "Bad",
    ratingStar: "{n} star",
    ratingStars: "{n} stars",
    ratingCommentLabel: "Anything to add? (optional)",
    ratingCommentPlaceholder: "Tell us more…",
    ratingSend: "Send feedback",
    ratingThanks: "Thanks for your feedback!",
    transcriptAsk: "Email me the transcript",
    transcriptLabel: "Your email address",
    transcriptSend: "Send",
    transcriptRequired: "Please enter your email address.",
    transcriptSent: "Transcript queued for {email}. It should arrive in a few minutes.",
    lineRatedGood: "You rated the conversation: good",
    lineRatedBad: "You rated the conversation: bad",
    lineRatedStars: "You rated the conversation {n}/5",
    closedPlaceholder: "This conversation is closed",
    placeholder: "Write a message…",
    messageLabel: "Message",
    send: "Send",
    closeChat: "Close chat",
    sending: "Sending…",
    notSent: "Not sent",
    reconnecting: "Reconnecting…",
    connecting: "Connecting…",
    typing: "{name} is typing",
    previewNotice: "The team can see what you type before you send it.",
    rateLimited: "You're sending messages too fast. Try again in {n}\u00a0s.", // "s." never wraps alone
    tooLong: "Your message is too long (maximum {max} characters).",
    handoffUnavailable: "A team member isn't available right now.",
    genericError: "Something went wrong. Please try again.",
    sessionLost: "We couldn't reconnect to the chat. Please reload the page.",
    lineRequested: "You asked to talk to a team member",
    lineDeclined: "No problem, let's keep chatting",
    lineClaimed: "{agent} joined the conversation",
    lineTransferred: "{agent} transferred the conversation to {to}",
    lineTransferEnded: "{agent} didn't accept; waiting for a team member",
    lineTakenOver: "{agent} took over the conversation",
    lineTimedOut: "No team member was available",
    lineOffline: "No team member is online right now",
    lineAfterHours: "The team is outside office hours",
    lineLead: "You shared your mobile number",
    lineResolved: "The conversation was closed",
    lineResolvedBy: "{agent} closed the conversation",
    lineReleased: "{agent} left the conversation",
    lineResolvedIdle: "The conversation was closed after a while without messages",
    lineContinued: "You continued with the AI in a new chat",
    lineEnded: "You ended the chat",
    endChat: "End chat",
  },
  CONFIG.strings && typeof CONFIG.strings === "object" ? CONFIG.strings : {},
);

function readConfig() {
  try {
    const node = document.getElementById("pivra-config");
    const value = node ? JSON.parse(node.textContent || "{}") : {};
    return value && typeof value === "object" ? value : {};
  } catch (err) {
    return {};
  }
}

export function fmt(template, vars) {
  return String(template).replace(/\{(\w+)\}/g, (whole, key) => (key in vars ? String(vars[key]) : whole));
}

function safeColor(value) {
  return typeof value === "string" && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(value.trim()) ? value.trim() : null;
}
