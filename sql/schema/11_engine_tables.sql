-- The engine's tables: setting overrides, mutes, the edge-triggered check state, sweep records,
-- prompt texts, the prompt outbox and the reactors seen.

-- Setting overrides: project '*' changes the global value, any other project only that project.
-- (What each key means, its kind and range: the setting_definitions view.) valid: whether the value
-- is allowed for its key, kept by a trigger (and recomputed when the code is loaded); a value that
-- is not allowed is never used.
CREATE TABLE ps_health.settings (
    key         varchar(64) NOT NULL,
    project     varchar(255) NOT NULL DEFAULT '*',
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    valid       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (key, project)
);

-- Mute/snooze: checks are still recorded, no prompt goes out until the time passes.
CREATE TABLE ps_health.mutes (
    project     varchar(255) PRIMARY KEY,
    until       timestamptz NOT NULL,
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Current state per (project, check type, subject): what makes checks edge-triggered.
CREATE TABLE ps_health.check_state (
    project          varchar(255) NOT NULL,
    check_type       varchar(50) NOT NULL,
    subject          varchar(255) NOT NULL,
    status           varchar(20) NOT NULL CHECK (status IN ('ok', 'warning', 'critical')),
    since            timestamptz NOT NULL,
    last_check_id    integer NOT NULL,
    details          jsonb NOT NULL DEFAULT '{}',
    reminders        integer NOT NULL DEFAULT 0,
    next_reminder_at timestamptz,
    acknowledged_at  timestamptz,
    -- the template its reminders and escalations use
    template         varchar(64),
    escalated_at     timestamptz,
    escalations      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (project, check_type, subject)
);
CREATE INDEX idx_check_state_reminder ON ps_health.check_state (next_reminder_at)
    WHERE status <> 'ok' AND acknowledged_at IS NULL;

-- One row per sweep, so the audit shows the monitor ran even when all was well.
CREATE TABLE ps_health.sweep_runs (
    id           bigserial PRIMARY KEY,
    swept_at     timestamptz NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms  numeric(12,3) NOT NULL,
    targets      integer NOT NULL,
    counts       jsonb NOT NULL,
    source       text NOT NULL DEFAULT 'manual'
);
CREATE INDEX idx_sweep_runs_swept_at ON ps_health.sweep_runs (swept_at DESC);

-- Editable prompt texts; {name} is replaced from the check's details. The defaults are added by
-- the code (30_outbox.sql) and never overwrite an edited text.
CREATE TABLE ps_health.prompt_templates (
    key   varchar(64) PRIMARY KEY,
    body  text NOT NULL
);

-- The outbox: one row per prompt. state: waiting (no deliverable session yet), pending,
-- claimed, delivered, failed, suppressed, expired. channel: the pane (tmux), the project's
-- command channel, or the operator's escalation command. kind: an alert, or a step of the
-- handoff cycle (reset, then resume, which waits for the reset: after_id).
CREATE TABLE ps_health.prompts (
    id            bigserial PRIMARY KEY,
    project       varchar(255) NOT NULL,
    host          varchar(255),
    target        varchar(255),
    severity      varchar(20) NOT NULL CHECK (severity IN ('warning', 'critical')),
    text          text NOT NULL DEFAULT '',
    state         varchar(12) NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('waiting', 'pending', 'claimed', 'delivered', 'failed', 'suppressed', 'expired')),
    attempts      integer NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL,
    lease_until   timestamptz,
    worker        varchar(255),
    outcome       varchar(20),
    detail        text,
    created_at    timestamptz NOT NULL,
    claimed_at    timestamptz,
    completed_at  timestamptz,
    txid          bigint NOT NULL DEFAULT txid_current(),
    channel       varchar(12) NOT NULL DEFAULT 'tmux'
                  CONSTRAINT prompts_channel_check CHECK (channel IN ('tmux', 'command', 'escalation')),
    kind          varchar(12) NOT NULL DEFAULT 'alert'
                  CONSTRAINT prompts_kind_check CHECK (kind IN ('alert', 'reset', 'resume', 'escalation')),
    after_id      bigint REFERENCES ps_health.prompts (id) ON DELETE SET NULL,
    CONSTRAINT prompts_claimed_has_lease CHECK (state <> 'claimed' OR (lease_until IS NOT NULL AND worker IS NOT NULL))
);
CREATE INDEX idx_prompts_open ON ps_health.prompts (host, id) WHERE state IN ('pending', 'claimed');
CREATE INDEX idx_prompts_after ON ps_health.prompts (after_id) WHERE after_id IS NOT NULL;
CREATE INDEX idx_prompts_project ON ps_health.prompts (project, created_at DESC);

-- The lines of a prompt, one per check it reports.
CREATE TABLE ps_health.prompt_items (
    prompt_id  bigint NOT NULL REFERENCES ps_health.prompts (id) ON DELETE CASCADE,
    check_id   integer NOT NULL REFERENCES ps_health.health_checks (id) ON DELETE CASCADE,
    line       text NOT NULL,
    PRIMARY KEY (prompt_id, check_id)
);
CREATE INDEX idx_prompt_items_check ON ps_health.prompt_items (check_id);
-- A prompt carries a few checks. Said to the planner, so it looks a prompt's items up by key even after a burst of
-- failures gave a few prompts thousands of checks each: from such statistics it read the whole table at every claim.
ALTER TABLE ps_health.prompt_items ALTER COLUMN prompt_id SET (n_distinct = -0.5);

-- Reactors seen: every claim call says which worker on which host is alive; a worker id belongs
-- to the login that first claimed with it (or last started a reactor with it). A reactor that started
-- through reactor_start also names its listener connection (backend_pid, listener_name): only such a
-- reactor, while that connection of its login is open, counts as running.
CREATE TABLE ps_health.reactors (
    worker       varchar(255) PRIMARY KEY,
    host         varchar(255) NOT NULL,
    last_seen    timestamptz NOT NULL,
    login        name,
    backend_pid  integer,
    started_at   timestamptz,
    -- the listener connection's application_name when it started: with backend_pid and login, what tells
    -- it from a later backend that got the same pid
    listener_name text
);

-- How an agent CLI's screen looks to the reactor, and where its context figures are, per program
-- name (an entry of the agent_programs setting); '*' is the generic default. Patterns are Python
-- regular expressions. command_pattern also recognises the program by its path or script path;
-- the input line is the rest of the last screen line matching input_pattern; input matching
-- ignore_pattern (a placeholder in an empty box) counts as empty; clear_keys (tmux key names)
-- empty it. ready_pattern, busy_pattern and dialog_pattern are searched in the whole screen (lines
-- without trailing spaces, multi-line): the input box is shown / a turn is running / a dialog, menu
-- or selection list is open. Text of more than paste_above bytes is sent as one bracketed paste,
-- which the agent may show collapsed as placeholder_pattern. reset_command clears the agent's
-- context; context_source names the format of its transcript (context_window when the file does
-- not say the window). The defaults (agent_profile_defaults, 54_panes.sql) are added when missing
-- and never overwrite a row.
CREATE TABLE ps_health.agent_profiles (
    program         varchar(64) PRIMARY KEY,
    input_pattern   text NOT NULL CONSTRAINT agent_profiles_input_pattern_check CHECK (('' ~ input_pattern) IS NOT NULL),
    ignore_pattern  text CONSTRAINT agent_profiles_ignore_pattern_check
                    CHECK (ignore_pattern IS NULL OR ('' ~ ignore_pattern) IS NOT NULL),
    clear_keys      text[] NOT NULL DEFAULT '{}',
    description     text,
    command_pattern text CONSTRAINT agent_profiles_command_pattern_check
                    CHECK (command_pattern IS NULL OR ('' ~ command_pattern) IS NOT NULL),
    reset_command   varchar(100),
    ready_pattern   text CONSTRAINT agent_profiles_ready_pattern_check
                    CHECK (ready_pattern IS NULL OR ('' ~ ready_pattern) IS NOT NULL),
    busy_pattern    text CONSTRAINT agent_profiles_busy_pattern_check
                    CHECK (busy_pattern IS NULL OR ('' ~ busy_pattern) IS NOT NULL),
    dialog_pattern  text CONSTRAINT agent_profiles_dialog_pattern_check
                    CHECK (dialog_pattern IS NULL OR ('' ~ dialog_pattern) IS NOT NULL),
    paste_above     integer CONSTRAINT agent_profiles_paste_above_check CHECK (paste_above >= 0),
    placeholder_pattern text CONSTRAINT agent_profiles_placeholder_pattern_check
                    CHECK (placeholder_pattern IS NULL OR ('' ~ placeholder_pattern) IS NOT NULL),
    context_source  varchar(32) CONSTRAINT agent_profiles_context_source_check
                    CHECK (context_source IN ('claude-transcript', 'codex-rollout', 'gemini-chat')),
    context_window  integer CONSTRAINT agent_profiles_context_window_check CHECK (context_window > 0)
);

-- The locks ps-health's functions take: rows of a table no login but the owner may lock, so no other
-- login can hold one (as it could an advisory lock: any login may take any advisory key). A row per
-- project and per host, added the first time it is locked; one for the settings and one for the sweep.
CREATE TABLE ps_health.locks (
    kind  text NOT NULL,
    name  text NOT NULL,
    PRIMARY KEY (kind, name)
);

-- The version of the agent profiles and the prompts' marker a claim hands out: one row, a random token drawn
-- anew at every change to agent_profiles or prompt_templates and at every load of the code (never a number
-- that a restore could set back to one a reactor holds). A reactor holding the current version is not sent
-- them again, and reading it costs a claim one row instead of a look at every profile.
CREATE TABLE ps_health.profiles_version (
    one      boolean PRIMARY KEY DEFAULT true CONSTRAINT profiles_version_one_check CHECK (one),
    version  uuid NOT NULL DEFAULT gen_random_uuid()
);
