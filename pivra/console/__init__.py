"""The agent console's WebSocket: queue changes and live conversations for signed-in agents."""
