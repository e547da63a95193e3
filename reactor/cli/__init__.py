"""The `ps-health` command line: argparse, one module per group of subcommands, and the rendering of
what SQL returns. Every decision is SQL's; these modules parse, call a function, print.

entry         the console script: statusline and hook answered without the full CLI, the rest to main
main          the parser and the dispatch to each group
agent         what a PS runs: session, context, statusline, respond, handoff, instructions
ops           what the operator runs: status, checks, prompts, settings, mute, forget, demo
database      db, migrate, drift, the embedded cluster
cron          the pg_cron jobs
reactor       the flags of the reactor process
setup         ps-health setup claude-code / codex / gemini
spawn         ps-health spawn: subagents recorded, and spawn run, which wraps one
doctor        the self-check
instructions  the PS instructions
render        tables and text for the terminal (agent text made safe to print)
util          what the command modules share
"""
