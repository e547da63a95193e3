-- The reactor's side of the outbox: claim under a lease, complete, extend, release; the handoff
-- cycle's steps and escalations told their outcome.

-- _settings_of: the effective values (project override, global override, default; the rule of _setting)
-- of several settings of a project as one JSON object: one lookup per prompt instead of one per key.
-- (PL/pgSQL: its query is planned once per connection, not at every claim.)
CREATE FUNCTION ps_health._settings_of(p_project text, p_keys text[])
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_object_agg(d.key, coalesce(sp.value, sg.value, d.default_value))
              FROM ps_health.setting_definitions d
              LEFT JOIN ps_health.settings sg ON sg.key = d.key AND sg.project = '*' AND sg.valid
              LEFT JOIN ps_health.settings sp ON sp.key = d.key AND sp.project = p_project AND sp.valid
             WHERE d.key = ANY (p_keys));
END;
$$;

-- _profiles_version: a text that changes whenever an agent profile or the marker template changes, and
-- whenever the code is loaded again (an upgrade: the functions that hand them out may have changed). One
-- row to read: it is on the way of every prompt (see profiles_version).
CREATE FUNCTION ps_health._profiles_version()
RETURNS text LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((SELECT 'v' || version FROM ps_health.profiles_version),
                    -- (the row gone: a version no reactor holds, so every claim sends them)
                    'unversioned ' || clock_timestamp());
END;
$$;

-- trg_new_profiles_version: a new version of the profiles and the marker (a statement changed them): a token never
-- used before, so no restore of an earlier row and no reload can bring back one a reactor holds.
CREATE FUNCTION ps_health.trg_new_profiles_version()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ps_health.profiles_version SET version = gen_random_uuid();
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_agent_profiles_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ps_health.agent_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION ps_health.trg_new_profiles_version();

-- (any template: the marker is one of them, and templates change rarely)
CREATE TRIGGER trg_prompt_templates_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ps_health.prompt_templates
    FOR EACH STATEMENT EXECUTE FUNCTION ps_health.trg_new_profiles_version();

-- This file runs at every load of the code: the functions that hand the profiles out are new, and so is
-- their version.
INSERT INTO ps_health.profiles_version (version) VALUES (gen_random_uuid())
ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version;

-- claim_prompts: hand out up to p_limit deliverable prompts of one host under a lease
-- (FOR UPDATE SKIP LOCKED, so reactors never get the same row). Expired leases are claimable
-- again; a prompt out of attempts fails; a prompt whose problems all recovered expires. With each
-- pane prompt comes what the reactor checks before typing: the pane's identity as first seen (NULL:
-- not yet), the programs it may type into, how their input lines look, and the prompts' marker.
-- The agent profiles and the marker come with their version; a caller that gives the version it
-- already holds (p_profiles_version) gets them as NULL while it is still the current one.
CREATE FUNCTION ps_health.claim_prompts(p_host text, p_worker text, p_limit integer DEFAULT 10,
                                        p_lease_seconds integer DEFAULT 60, p_now timestamptz DEFAULT now(),
                                        p_profiles_version text DEFAULT NULL)
RETURNS TABLE (id bigint, project varchar, target varchar, severity varchar, text text, attempts integer,
               submit_delay_ms integer, idle_seconds numeric, max_defer_seconds numeric, check_ids integer[],
               channel varchar, kind varchar, command jsonb, timeout_seconds numeric,
               check_id integer, check_type varchar, check_status varchar, identity varchar,
               agent_programs jsonb, agent_profiles jsonb, marker_pattern text, profiles_version text,
               claimed_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    v_left integer := p_limit;
    v_ids bigint[];
    v_n integer;
    v_profiles jsonb;
    v_marker text;
    v_version text;
    v_retried boolean;
    v_unsettled boolean;  -- a stored setting is not allowed (rare: written around set_setting)
BEGIN
    -- (the reactor's call, with plain names and now(), runs no statement to check them: each one costs on
    -- the way of every prompt; any other call gets the full checks, their errors and their order)
    IF NOT coalesce(ps_health._plain_text(p_host) AND ps_health._plain_text(p_worker), false) THEN
        PERFORM ps_health._check_text('host', p_host), ps_health._check_text('worker', p_worker);
    END IF;
    IF p_now IS DISTINCT FROM now() THEN
        PERFORM ps_health._check_time('p_now', p_now);
    END IF;
    -- The login must be one that may act on the host, and a worker id is its first login's: another login
    -- claiming with it is refused (the owner excepted). Nothing written: one of the two said no, and says why.
    INSERT INTO ps_health.reactors AS r (worker, host, last_seen, login)
    SELECT p_worker, p_host, p_now, session_user WHERE ps_health._may_act(NULL, p_host)
    ON CONFLICT (worker) DO UPDATE SET host = EXCLUDED.host, last_seen = EXCLUDED.last_seen,
                                       login = coalesce(r.login, EXCLUDED.login)
     WHERE (r.login IS NULL OR r.login = EXCLUDED.login OR ps_health._is_owner())
       -- (a worker id serves one host at a time: looked at, on the row as committed when this got to it, only
       -- when the host changes)
       AND CASE WHEN r.host = EXCLUDED.host OR r.backend_pid = pg_backend_pid() THEN true
                ELSE NOT ps_health._listener_open(r.backend_pid, r.login, r.listener_name) END;
    IF NOT FOUND THEN
        PERFORM ps_health._authorize(NULL, p_host), ps_health._authorize_worker(p_worker),
                ps_health._refuse_worker_elsewhere(p_worker, p_host);
    END IF;

    -- (after the login's rights: a login that may not claim here learns only that; this aborts what was written)
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 1000 THEN
        RAISE EXCEPTION 'limit must be between 1 and 1000, got %', p_limit USING ERRCODE = '22023';
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > 86400 THEN
        RAISE EXCEPTION 'lease_seconds must be between 1 and 86400, got %', p_lease_seconds USING ERRCODE = '22023';
    END IF;

    -- Rounds: lock the next deliverable prompts, close those out of attempts or whose problems all
    -- recovered, claim the rest; again while closed ones left room. Only the rows taken are looked
    -- at, so a claim costs the same with ten or ten thousand prompts waiting.
    LOOP
        SELECT array_agg(q.id ORDER BY q.id), bool_or(q.attempts > 0),
               EXISTS (SELECT 1 FROM ps_health.settings WHERE NOT valid)
          INTO v_ids, v_retried, v_unsettled FROM (
            SELECT p.id, p.attempts FROM ps_health.prompts p
             WHERE (p.host = p_host OR (p.host IS NULL AND p.channel = 'escalation' AND p.state IN ('pending', 'claimed')))
               AND ((p.state = 'pending' AND p.not_before <= p_now) OR (p.state = 'claimed' AND p.lease_until < p_now))
               -- a step of the handoff cycle waits until the step before it was delivered
               AND (p.after_id IS NULL OR EXISTS (SELECT 1 FROM ps_health.prompts b
                                                   WHERE b.id = p.after_id AND b.state = 'delivered'))
             ORDER BY p.id
             LIMIT v_left
             FOR UPDATE SKIP LOCKED) q;
        EXIT WHEN v_ids IS NULL;
        IF v_version IS NULL THEN  -- once per claim, and only when there is something to claim
            v_version := ps_health._profiles_version();
            IF v_version IS DISTINCT FROM p_profiles_version THEN  -- (not held by the caller yet)
                v_profiles := ps_health._agent_profiles();
                v_marker := ps_health._marker_pattern();
            END IF;
        END IF;

        IF v_retried THEN  -- (a prompt never claimed has attempts left: at least 1 is allowed)
            UPDATE ps_health.prompts p
               SET state = 'failed', outcome = 'failed', completed_at = p_now, lease_until = NULL,
                   detail = format('gave up after %s attempts; last: %s', p.attempts, coalesce(p.detail, 'lease expired'))
             WHERE p.id = ANY (v_ids)
               AND p.attempts >= (ps_health._settings_of(p.project, '{prompt_max_attempts}')->>'prompt_max_attempts')::integer;
        END IF;
        IF v_unsettled THEN
            PERFORM ps_health._fail_unsettled(v_ids, p_now);
        END IF;
        -- Those whose problems all recovered expire, the others are claimed: one statement (on the way of every
        -- prompt, each statement costs), whose two parts see the rows as they were before it.
        RETURN QUERY
        WITH recovered AS (
            UPDATE ps_health.prompts p
               SET state = 'expired', completed_at = p_now, detail = 'every problem it reported has recovered'
             WHERE p.id = ANY (v_ids) AND p.state = 'pending' AND p.kind = 'alert'
               -- (each of its items looked up by key: "OFFSET 0" keeps the planner from joining whole tables, which
               -- it did once prompts carried many items, the claim of one prompt then reading every check ever made)
               AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i
                                CROSS JOIN LATERAL (SELECT 1 FROM ps_health.health_checks c
                                                      JOIN ps_health.check_state st
                                                        ON st.project = c.project AND st.check_type = c.check_type
                                                       AND st.subject = c.subject
                                                     WHERE c.id = i.check_id AND st.status <> 'ok' OFFSET 0) open
                                WHERE i.prompt_id = p.id OFFSET 0)
            RETURNING p.id),
        claimed AS (
            UPDATE ps_health.prompts p
               SET state = 'claimed', worker = p_worker, lease_until = p_now + make_interval(secs => p_lease_seconds),
                   attempts = p.attempts + 1, claimed_at = p_now
             WHERE p.id = ANY (v_ids) AND p.state IN ('pending', 'claimed')
               AND p.id NOT IN (SELECT r.id FROM recovered r)
            RETURNING p.*)
        SELECT c.id, c.project, c.target, c.severity, c.text, c.attempts,
               (extract(epoch FROM (st.v->>'submit_delay')::interval) * 1000)::integer,
               (st.v->>'idle_seconds')::numeric,
               extract(epoch FROM (st.v->>CASE c.severity WHEN 'critical' THEN 'critical_max_defer'
                                                          ELSE 'max_defer' END)::interval)::numeric,
               coalesce(items.ids, '{}'),
               c.channel, c.kind,
               CASE c.channel WHEN 'command' THEN (st.v->>'command_channel')::jsonb
                              WHEN 'escalation' THEN (st.v->>'escalation_command')::jsonb END,
               extract(epoch FROM (st.v->>'command_timeout')::interval)::numeric,
               items.first_id, items.first_type, items.first_status,
               CASE WHEN s.host = c.host AND s.tmux_target = c.target AND s.ended_at IS NULL THEN s.target_identity END,
               CASE c.channel WHEN 'tmux' THEN (st.v->>'agent_programs')::jsonb END,
               CASE c.channel WHEN 'tmux' THEN v_profiles END, CASE c.channel WHEN 'tmux' THEN v_marker END,
               v_version, c.claimed_at
          FROM claimed c
          CROSS JOIN LATERAL (SELECT ps_health._settings_of(c.project, ARRAY['submit_delay', 'idle_seconds',
                                  'max_defer', 'critical_max_defer', 'command_channel', 'escalation_command',
                                  'command_timeout', 'agent_programs']) AS v OFFSET 0) st  -- once per row
          LEFT JOIN ps_health.ps_sessions s ON s.project = c.project  -- its identity if it is the session's pane
          -- its checks, and the first of them (a critical one first): one look at its items
          CROSS JOIN LATERAL (SELECT array_agg(h.id ORDER BY h.id) AS ids,
                                     (array_agg(h.id ORDER BY (h.status = 'critical') DESC, h.id))[1] AS first_id,
                                     (array_agg(h.check_type ORDER BY (h.status = 'critical') DESC, h.id))[1] AS first_type,
                                     (array_agg(h.status ORDER BY (h.status = 'critical') DESC, h.id))[1] AS first_status
                                FROM ps_health.prompt_items i
                                CROSS JOIN LATERAL (SELECT x.id, x.status, x.check_type FROM ps_health.health_checks x
                                                     WHERE x.id = i.check_id OFFSET 0) h  -- (by key, as above)
                               WHERE i.prompt_id = c.id) items
         ORDER BY c.id;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        EXIT WHEN v_n = cardinality(v_ids) OR cardinality(v_ids) < v_left;
        v_left := v_left - v_n;
    END LOOP;
END;
$$;

-- _fail_unsettled: of the prompts being claimed, fail those whose delivery needs a setting stored
-- with a value that is not allowed (written around set_setting), with the reason on the prompt and
-- in the checks' action_taken; the claim goes on with every other prompt. Looked up once per
-- project and channel; the claim calls it only while some stored value is not allowed.
CREATE FUNCTION ps_health._fail_unsettled(p_ids bigint[], p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_failed ps_health.prompts;
BEGIN
    FOR v_failed IN
        WITH problems AS (
            SELECT x.project, x.channel, ps_health._setting_problem(x.project,
                       ARRAY['prompt_max_attempts', 'prompt_retry_delay', 'submit_delay', 'idle_seconds', 'max_defer',
                             'critical_max_defer', 'command_timeout']
                       || CASE x.channel WHEN 'command' THEN ARRAY['command_channel']
                                         WHEN 'escalation' THEN ARRAY['escalation_command'] ELSE '{}' END) AS problem
              FROM (SELECT DISTINCT q.project, q.channel FROM ps_health.prompts q WHERE q.id = ANY (p_ids)) x)
        UPDATE ps_health.prompts p
           SET state = 'failed', outcome = 'failed', completed_at = p_now, lease_until = NULL, detail = pr.problem
          FROM problems pr
         WHERE p.id = ANY (p_ids) AND p.state IN ('pending', 'claimed')
           AND p.project = pr.project AND p.channel = pr.channel AND pr.problem IS NOT NULL
        RETURNING p.*
    LOOP
        IF v_failed.kind = 'alert' THEN
            UPDATE ps_health.health_checks c
               SET action_taken = format('prompt #%s failed: %s', v_failed.id, v_failed.detail)
              FROM ps_health.prompt_items i
             WHERE i.prompt_id = v_failed.id AND c.id = i.check_id;
        ELSE
            PERFORM ps_health._step_delivered(v_failed, 'failed', 'failed', v_failed.detail, p_now);
        END IF;
    END LOOP;
END;
$$;

-- _refuse_unheld: refuse a batch of outcomes for prompts this worker does not hold: one the login may not handle
-- (another host's) or that does not exist is 'unknown prompt', one not claimed by the worker says its state, and
-- one of a claim (p_claimed_at: each outcome's claim time, NULL for any) that is not the prompt's latest says so.
CREATE FUNCTION ps_health._refuse_unheld(p_ids bigint[], p_worker text, p_claimed_at timestamptz[] DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_handled bigint[] := ps_health._handled(p_ids);
    v_bad record;
BEGIN
    SELECT u.i INTO v_bad FROM unnest(p_ids) u(i) WHERE u.i <> ALL (v_handled) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown prompt %', v_bad.i USING ERRCODE = 'P0002';
    END IF;
    SELECT p.id, p.state INTO v_bad FROM ps_health.prompts p
     WHERE p.id = ANY (p_ids) AND (p.state <> 'claimed' OR p.worker IS DISTINCT FROM p_worker) ORDER BY p.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'prompt % is % and not claimed by worker "%"', v_bad.id, v_bad.state, left(p_worker, 255)
            USING ERRCODE = '55000';
    END IF;
    IF p_claimed_at IS NOT NULL THEN
        -- (each prompt by its key: joined, a batch of 1,000 was compared with every prompt 1,000 times over)
        SELECT u.i AS id INTO v_bad FROM unnest(p_ids, p_claimed_at) u(i, c)
         CROSS JOIN LATERAL (SELECT p.claimed_at FROM ps_health.prompts p WHERE p.id = u.i OFFSET 0) p
         WHERE u.c IS NOT NULL AND p.claimed_at IS DISTINCT FROM u.c ORDER BY u.i LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'prompt % was claimed again since the claim this outcome is of: it is not recorded',
                v_bad.id USING ERRCODE = '55000',
                HINT = 'The prompt is under another claim than the one this outcome names: give the claimed_at of its latest claim.';
        END IF;
    END IF;
END;
$$;

-- complete_prompts: the reactor's outcomes for a batch of claimed prompts (delivered, target_missing,
-- failed, deferred, target_changed), one set-based pass; writes the checks' action_taken. A failed
-- attempt goes back to pending after the retry delay (times the attempt); out of attempts it fails.
-- Deferred (nothing typed: the pane ran another program, was in a mode, or held text the reactor did
-- not type) goes back to pending after prompt_defer_delay without using an attempt. target_changed
-- (the pane is not the one the session registered) makes the session gone; the prompt waits for a new
-- registration. All or nothing: one unknown prompt, bad outcome or prompt not claimed by the worker
-- refuses the batch and changes nothing. p_claimed_at (the claimed_at each prompt's claim returned): an outcome
-- is refused unless the prompt is still under that claim, so an outcome sent again after its first answer was
-- lost never lands on a later claim of the prompt (which would send a prompt typed since back to pending).
CREATE FUNCTION ps_health.complete_prompts(p_worker text, p_ids bigint[], p_outcomes text[],
                                           p_details text[] DEFAULT NULL, p_now timestamptz DEFAULT now(),
                                           p_claimed_at timestamptz[] DEFAULT NULL)
RETURNS TABLE (id bigint, state varchar) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_n integer := cardinality(p_ids);
    v_bad record;
    v_steps ps_health.prompts[];
    v_step ps_health.prompts;
BEGIN
    IF p_ids IS NULL OR p_outcomes IS NULL OR cardinality(p_outcomes) <> v_n
       OR (p_details IS NOT NULL AND cardinality(p_details) <> v_n) THEN
        RAISE EXCEPTION 'ids, outcomes and details must be arrays of one length, got %, % and %',
            coalesce(cardinality(p_ids)::text, 'NULL'), coalesce(cardinality(p_outcomes)::text, 'NULL'),
            coalesce(cardinality(p_details)::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF p_claimed_at IS NOT NULL AND cardinality(p_claimed_at) <> v_n THEN
        RAISE EXCEPTION 'claimed_at must be an array as long as ids (%), got %', v_n, cardinality(p_claimed_at)
            USING ERRCODE = '22023';
    END IF;
    IF v_n > 10000 THEN
        RAISE EXCEPTION 'at most 10000 outcomes per call, got %', v_n USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    SELECT u.o INTO v_bad FROM unnest(p_outcomes) u(o)
     WHERE u.o IS NULL OR u.o NOT IN ('delivered', 'target_missing', 'failed', 'deferred', 'target_changed') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'outcome must be delivered, target_missing, failed, deferred or target_changed, got "%"',
            left(coalesce(v_bad.o, 'NULL'), 40) USING ERRCODE = '22023';
    END IF;
    SELECT u.i INTO v_bad FROM unnest(p_ids) u(i) GROUP BY u.i HAVING u.i IS NULL OR count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'prompt % is given more than one outcome', coalesce(v_bad.i::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._authorize_worker(p_worker);
    -- Before any lock: a prompt of a host the login may not act for is unknown to it, as one that does not exist
    -- (it learns nothing of other hosts' prompts), and only the projects of prompts this worker holds are locked
    -- (an escalation names any tenant's project). Checked again under the lock.
    PERFORM ps_health._refuse_unheld(p_ids, p_worker);
    PERFORM ps_health._lock_projects(ARRAY(SELECT p.project FROM ps_health.prompts p WHERE p.id = ANY (p_ids)));
    PERFORM 1 FROM ps_health.prompts p WHERE p.id = ANY (p_ids) ORDER BY p.id FOR UPDATE;
    -- (deleted by prune, completed or claimed anew meanwhile: under the lock, so no claim comes between)
    PERFORM ps_health._refuse_unheld(p_ids, p_worker, p_claimed_at);
    -- the cycle's steps and escalations as they were before this outcome
    SELECT array_agg(p ORDER BY p.id) INTO v_steps FROM ps_health.prompts p WHERE p.id = ANY (p_ids) AND p.kind <> 'alert';

    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.outcome, left(nullif(ps_health._clean_text(u.detail), ''), 1000) AS detail, u.n
          FROM unnest(p_ids, p_outcomes, coalesce(p_details, array_fill(NULL::text, ARRAY[v_n])))
               WITH ORDINALITY AS u(id, outcome, detail, n)),
    decided AS (
        SELECT i.*, p.project, p.attempts, p.kind, p.channel, p.target,
               CASE WHEN i.outcome = 'delivered' THEN 'delivered'
                    WHEN i.outcome = 'deferred' THEN 'pending'
                    WHEN i.outcome = 'target_changed' THEN 'waiting'
                    WHEN p.attempts >= (st.v->>'prompt_max_attempts')::integer THEN 'failed'
                    ELSE 'pending' END AS new_state,
               i.outcome IN ('deferred', 'target_changed') AS untouched,
               (st.v->>'prompt_retry_delay')::interval AS retry_delay, st.v->>'prompt_defer_delay' AS defer_delay
          FROM input i JOIN ps_health.prompts p ON p.id = i.id
          CROSS JOIN LATERAL (SELECT ps_health._settings_of(p.project, ARRAY['prompt_max_attempts',
                                  'prompt_retry_delay', 'prompt_defer_delay']) AS v OFFSET 0) st),
    updated AS (
        UPDATE ps_health.prompts p
           SET state = d.new_state, outcome = d.outcome, detail = d.detail, lease_until = NULL,
               -- nothing was typed: the attempt the claim counted is given back
               attempts = CASE WHEN d.untouched THEN greatest(p.attempts - 1, 0) ELSE p.attempts END,
               worker = CASE WHEN d.new_state IN ('pending', 'waiting') THEN NULL ELSE p.worker END,
               completed_at = CASE WHEN d.new_state IN ('pending', 'waiting') THEN NULL ELSE p_now END,
               not_before = CASE WHEN d.outcome = 'deferred' THEN p_now + d.defer_delay::interval
                                 WHEN d.new_state = 'pending' THEN p_now + d.retry_delay * p.attempts
                                 ELSE p.not_before END
          FROM decided d WHERE p.id = d.id
        RETURNING p.id),
    audited AS (
        UPDATE ps_health.health_checks c
           SET action_taken = CASE d.new_state
                   WHEN 'delivered' THEN format('prompt #%s delivered to %s at %s', d.id,
                                                CASE d.channel WHEN 'tmux' THEN d.target ELSE 'the command channel' END,
                                                to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'))
                   WHEN 'failed' THEN format('prompt #%s failed after %s attempts: %s%s', d.id, d.attempts, d.outcome,
                                             coalesce(': ' || d.detail, ''))
                   WHEN 'waiting' THEN format('prompt #%s not typed: %s; it waits for a new registration of the session',
                                              d.id, coalesce(d.detail, 'the pane is not the one the session registered'))
                   ELSE CASE WHEN d.outcome = 'deferred'
                             THEN format('prompt #%s deferred, nothing typed: %s; tried again in %s', d.id,
                                         coalesce(d.detail, 'the pane was not ready'), d.defer_delay)
                             ELSE format('prompt #%s attempt %s: %s%s; will retry', d.id, d.attempts, d.outcome,
                               coalesce(': ' || d.detail, '')) END END
          FROM decided d JOIN ps_health.prompt_items i ON i.prompt_id = d.id
         WHERE d.kind = 'alert' AND c.id = i.check_id
        RETURNING c.id)
    SELECT d.id, d.new_state::varchar FROM decided d ORDER BY d.n;

    -- a pane that is not the session's own: the session is gone (once per project)
    IF 'target_changed' = ANY (p_outcomes) THEN
        PERFORM ps_health._pane_gone(p.project, min(u.detail), NULL, p_now)
           FROM unnest(p_ids, p_outcomes, coalesce(p_details, array_fill(NULL::text, ARRAY[v_n]))) u(id, outcome, detail)
           JOIN ps_health.prompts p ON p.id = u.id
          WHERE u.outcome = 'target_changed'
          GROUP BY p.project;
    END IF;

    -- the cycle's steps and escalations, told their outcome (now on the row) one by one
    FOREACH v_step IN ARRAY coalesce(v_steps, '{}') LOOP
        PERFORM ps_health._step_delivered(v_step, p.state, p.outcome, p.detail, p_now)
           FROM ps_health.prompts p WHERE p.id = v_step.id;
    END LOOP;
END;
$$;

-- complete_prompt: the reactor's outcome for one claimed prompt; see complete_prompts.
CREATE FUNCTION ps_health.complete_prompt(p_id bigint, p_worker text, p_outcome text, p_detail text DEFAULT NULL,
                                          p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE sql AS $$
    SELECT c.state::text FROM ps_health.complete_prompts(p_worker, ARRAY[p_id], ARRAY[p_outcome], ARRAY[p_detail], p_now) c
$$;

-- extend_leases: keep the leases of prompts a worker is still delivering (busy panes wait long).
CREATE FUNCTION ps_health.extend_leases(p_worker text, p_ids bigint[], p_lease_seconds integer DEFAULT 60,
                                        p_now timestamptz DEFAULT now())
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds < 1 OR p_lease_seconds > 86400 THEN
        RAISE EXCEPTION 'lease_seconds must be between 1 and 86400, got %', p_lease_seconds USING ERRCODE = '22023';
    END IF;
    PERFORM ps_health._check_time('p_now', p_now);
    PERFORM ps_health._authorize_worker(p_worker);
    p_ids := ps_health._handled(p_ids);
    -- rows in id order, as complete_prompts takes them
    PERFORM 1 FROM ps_health.prompts WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids)
     ORDER BY id FOR UPDATE;
    UPDATE ps_health.prompts SET lease_until = p_now + make_interval(secs => p_lease_seconds)
     WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE ps_health.reactors SET last_seen = p_now WHERE worker = p_worker;
    RETURN v_n;
END;
$$;

-- locked_prompts: of the prompts this worker holds, those whose project another transaction keeps locked right
-- now (a free lock is let go again as the call ends): the reactor asks before it records outcomes that once
-- waited for such a lock, so a lock kept for long costs it no wait per outcome.
CREATE FUNCTION ps_health.locked_prompts(p_worker text, p_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ps_health._authorize_worker(p_worker);
    p_ids := ps_health._handled(p_ids);
    RETURN QUERY SELECT p.id FROM ps_health.prompts p
                  WHERE p.id = ANY (p_ids) AND p.worker = p_worker AND NOT ps_health._try_lock_project(p.project)
                  ORDER BY p.id;
END;
$$;

-- _step_delivered: outcomes of the handoff cycle's steps and of escalations, each a row or a note in
-- the audit; a delivered reset wakes the reactor for the resume that waited on it.
CREATE FUNCTION ps_health._step_delivered(p ps_health.prompts, p_state text, p_outcome text, p_detail text,
                                          p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_check integer;
    v_next ps_health.prompts;
BEGIN
    SELECT check_id INTO v_check FROM ps_health.prompt_items WHERE prompt_id = p.id LIMIT 1;
    IF p.kind = 'escalation' THEN
        UPDATE ps_health.health_checks
           SET action_taken = coalesce(action_taken || '; ', '') ||
                              format('escalation #%s %s%s', p.id, CASE p_state WHEN 'pending' THEN 'attempt failed, will retry'
                                                                               ELSE p_state END, coalesce(': ' || p_detail, ''))
         WHERE id = v_check;
        RETURN;
    END IF;
    IF p_state <> 'delivered' THEN
        IF p_state = 'failed' THEN
            PERFORM ps_health._check(p.project, 'handoff', 'cycle', 'critical',
                jsonb_build_object('step', p.kind || '_failed', 'file', coalesce(
                    (SELECT handoff_file FROM ps_health.ps_sessions WHERE project = p.project), 'unknown'),
                    'minutes', 0, 'detail', p_detail), 'handoff.incomplete', p_now);
        END IF;
        RETURN;
    END IF;
    INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject, action_taken)
    VALUES (p.project, p_now, 'handoff', 'warning',
            jsonb_build_object('subject', 'cycle', 'step', p.kind || '_delivered', 'prompt_id', p.id), 'cycle',
            format('%s prompt #%s delivered to %s', p.kind, p.id, p.target));
    IF p.kind = 'resume' THEN
        UPDATE ps_health.ps_sessions SET cycle_state = 'resume_delivered', cycle_resumed_at = p_now
         WHERE project = p.project;
    END IF;
    FOR v_next IN SELECT * FROM ps_health.prompts WHERE after_id = p.id AND state = 'pending' LOOP
        PERFORM ps_health._notify_prompt(v_next.id, v_next.host);
    END LOOP;
END;
$$;

-- release_prompts: give back a worker's claimed prompts undelivered (clean shutdown).
CREATE FUNCTION ps_health.release_prompts(p_worker text, p_ids bigint[] DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    PERFORM ps_health._authorize_worker(p_worker);
    p_ids := ps_health._handled(ARRAY(SELECT p.id FROM ps_health.prompts p WHERE p.state = 'claimed' AND p.worker = p_worker
                                         AND (p_ids IS NULL OR p.id = ANY (p_ids))));
    PERFORM 1 FROM ps_health.prompts WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids)
     ORDER BY id FOR UPDATE;
    UPDATE ps_health.prompts
       SET state = 'pending', worker = NULL, lease_until = NULL, attempts = greatest(attempts - 1, 0)
     WHERE state = 'claimed' AND worker = p_worker AND id = ANY (p_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;
