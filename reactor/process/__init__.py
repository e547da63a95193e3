"""The reactor process, one per PS host: it LISTENs, claims the prompts SQL queued for this host, delivers
them (typed through reactor.tmux, or run as a project's command channel), records each outcome, and
reports what only this host can see (panes, output files, pids, transcripts, handoff files) as facts.

service      the loop: listen, claim, hand to the dispatcher, record; start and orderly shutdown
options      the reactor's settings and their one set of defaults
link         a database connection that survives outages (named queries, retries, reconnects)
dispatcher   one queue per pane: the busy gate, then the typist
completer    records delivery outcomes in batches
channel      a project's command channel (a program given the prompt on stdin)
housekeeping the probe rounds and timers, each on a thread of its own
probes       reading files, pids, transcripts and handoff folders (no database, no decisions)
ingest       forwards the spool the agent's hooks wrote
metrics      the Prometheus endpoint
memory       hands free heap memory back
"""
