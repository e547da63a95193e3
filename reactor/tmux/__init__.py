"""tmux, the only way ps-health touches a terminal.

client    one tmux server: look at a pane, send keys and pastes only while it is the pane looked at;
          every other tmux command (the probe's pane listing, the demo) runs through run() here
control   the persistent control-mode client the client talks through
pane      agent profiles: which program a pane runs, its input line, busy screens and dialogs
typist    types a prompt only while the pane is fit for it, then checks it arrived, once
"""
