"""What runs beside an agent CLI, after every message or tool call, so it must be quick and never block
the agent: its hooks and statusline write facts to a local spool (the reactor forwards them), the
spawn runner wraps a subagent, and setup writes the CLIs' settings.

hooks         Claude Code, Codex CLI and Gemini CLI hook events as facts
statusline    Claude Code's statusline: context figures as a fact, one line back
spool         the append-only local spool the hooks write and the reactor reads
spawnrun      runs a subagent as a recorded spawn
setup_claude  ps-health's hooks (and Claude Code's statusLine) merged into an agent CLI's settings
"""
