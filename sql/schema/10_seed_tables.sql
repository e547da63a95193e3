-- The seed's three tables, with the names, columns and constraints SQL clients of the original
-- migration rely on, and the columns the engine added after them (at the end, in that order).

-- One row per project: the project supervisor's current session.
CREATE TABLE ps_health.ps_sessions (
    id                      serial PRIMARY KEY,
    project                 varchar(255) NOT NULL UNIQUE,
    session_type            varchar(10) NOT NULL DEFAULT 'cli'
                            CONSTRAINT ps_sessions_session_type_check CHECK (session_type IN ('cli', 'sdk')),
    session_id              varchar(255),
    started_at              timestamptz NOT NULL DEFAULT now(),
    last_activity           timestamptz NOT NULL DEFAULT now(),
    last_context_check      timestamptz,
    context_usage           numeric(5,4)
                            CONSTRAINT ps_sessions_context_usage_check CHECK (context_usage >= 0 AND context_usage <= 1),
    estimated_tokens_used   integer,
    estimated_tokens_total  integer DEFAULT 200000,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    host                    varchar(255),
    tmux_target             varchar(255),
    transcript_path         text,
    ended_at                timestamptz,
    -- liveness of the tmux target as reported by the reactor: seen, missing, gone, unknown
    target_state            varchar(10) NOT NULL DEFAULT 'unknown'
                            CONSTRAINT ps_sessions_target_state_check CHECK (target_state IN ('seen', 'missing', 'gone', 'unknown')),
    target_misses           integer NOT NULL DEFAULT 0,
    handoff_requested_at    timestamptz,
    handoff_done_at         timestamptz,
    handoff_file            text,
    -- the automatic handoff cycle: reset queued, resume delivered, then complete or incomplete
    cycle_state             varchar(20)
                            CONSTRAINT ps_sessions_cycle_state_check
                            CHECK (cycle_state IN ('reset_queued', 'resume_delivered', 'complete', 'incomplete')),
    cycle_resumed_at        timestamptz,
    -- set when a handoff is done: reports of the conversation it ended (still over the critical line)
    -- are kept but do not reopen it, until a report from the fresh conversation arrives
    context_held_since      timestamptz,
    -- what the reactor saw at tmux_target when it first looked: the tmux server's pid and start
    -- time, the pane id and the pane's pid; a pane that no longer matches is not this session's
    target_identity         varchar(255),
    -- the login that registered the session (may it share a pane with another project?)
    registered_by           varchar(255),
    -- the agent CLI its hooks report for (an agent_profiles program): how its transcript is read
    agent                   varchar(64)
);

-- Every subagent a supervisor spawned.
CREATE TABLE ps_health.active_spawns (
    id                  serial PRIMARY KEY,
    project             varchar(255) NOT NULL,
    task_id             varchar(255) NOT NULL,
    task_type           varchar(100) NOT NULL,
    description         text,
    spawn_time          timestamptz NOT NULL DEFAULT now(),
    last_output_change  timestamptz,
    output_file         text,
    status              varchar(20) NOT NULL DEFAULT 'running'
                        CONSTRAINT active_spawns_status_check
                        CHECK (status IN ('running', 'completed', 'failed', 'stalled', 'abandoned')),
    exit_code           integer,
    error_message       text,
    completed_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    host                varchar(255),
    pid                 integer CONSTRAINT active_spawns_pid_check CHECK (pid > 0),
    pid_misses          integer NOT NULL DEFAULT 0,
    stalled_at          timestamptz,
    CONSTRAINT active_spawns_project_task_id_key UNIQUE (project, task_id)
);

-- The audit trail: one row per health-check finding.
CREATE TABLE ps_health.health_checks (
    id            serial PRIMARY KEY,
    project       varchar(255) NOT NULL,
    check_time    timestamptz NOT NULL DEFAULT now(),
    check_type    varchar(50) NOT NULL
                  CONSTRAINT health_checks_check_type_check
                  CHECK (check_type IN ('spawn', 'context', 'handoff', 'orphaned_work', 'pane')),
    status        varchar(20) NOT NULL
                  CONSTRAINT health_checks_status_check CHECK (status IN ('ok', 'warning', 'critical')),
    details       jsonb,
    action_taken  text,
    ps_response   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- what the finding is about within its type: a task id, 'session', 'spawns'
    subject       varchar(255)
);

CREATE INDEX idx_ps_sessions_project ON ps_health.ps_sessions (project);
CREATE INDEX idx_ps_sessions_context_usage ON ps_health.ps_sessions (context_usage);
CREATE INDEX idx_ps_sessions_last_activity ON ps_health.ps_sessions (last_activity);
-- whose is a pane: by the target registered on a host, and by the identity the reactor saw there
CREATE INDEX idx_ps_sessions_pane ON ps_health.ps_sessions (host, tmux_target) WHERE ended_at IS NULL;
CREATE INDEX idx_ps_sessions_identity ON ps_health.ps_sessions (target_identity) WHERE ended_at IS NULL;
CREATE INDEX idx_active_spawns_project ON ps_health.active_spawns (project);
CREATE INDEX idx_active_spawns_status ON ps_health.active_spawns (status);
CREATE INDEX idx_active_spawns_project_status ON ps_health.active_spawns (project, status);
CREATE INDEX idx_active_spawns_spawn_time ON ps_health.active_spawns (spawn_time);
CREATE INDEX idx_active_spawns_open ON ps_health.active_spawns (project) WHERE status IN ('running', 'stalled');
CREATE INDEX idx_health_checks_project ON ps_health.health_checks (project);
CREATE INDEX idx_health_checks_check_time ON ps_health.health_checks (check_time DESC);
CREATE INDEX idx_health_checks_status ON ps_health.health_checks (status);
CREATE INDEX idx_health_checks_project_status ON ps_health.health_checks (project, status);
