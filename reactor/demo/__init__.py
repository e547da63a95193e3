"""`ps-health demo`: a demo PS in a private tmux server, a spawn that goes quiet, the prompt and the answer.

run  the demo: database, reactor, tmux session, and --cleanup
ps   the demo PS (a small agent stand-in the reactor accepts)
"""
