-- Why a prompt is where it is: the outbox listing says what each prompt waits for.

-- _clock: a time as the prompts' texts show it.
CREATE FUNCTION ps_health._clock(p_at timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT to_char(p_at AT TIME ZONE 'UTC', 'HH24:MI:SS "UTC"') $$;

-- prompt_reason: what a prompt waits for (no session, the rate cap, a retry, the reset step, a
-- reactor, an idle pane), or what became of it; NULL for an unknown id or a plain delivery.
CREATE FUNCTION ps_health.prompt_reason(p_id bigint, p_now timestamptz DEFAULT now())
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    p ps_health.prompts;
    b ps_health.prompts;
    s ps_health.ps_sessions;
BEGIN
    SELECT * INTO p FROM ps_health.prompts WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.state = 'waiting' THEN
        SELECT * INTO s FROM ps_health.ps_sessions WHERE project = p.project;
        RETURN CASE WHEN s.id IS NULL THEN 'waiting for a session: the project has none'
                    WHEN s.ended_at IS NOT NULL THEN 'waiting for a session: the last one ended at ' || ps_health._clock(s.ended_at)
                    WHEN s.target_state = 'gone' THEN format('waiting for a session: its pane %s is gone', s.tmux_target)
                    ELSE 'waiting for a session with a pane (or a command_channel)' END;
    ELSIF p.state = 'pending' THEN
        IF p.after_id IS NOT NULL THEN
            SELECT * INTO b FROM ps_health.prompts WHERE id = p.after_id;
            IF b.state IS DISTINCT FROM 'delivered' THEN
                RETURN format('waiting for the %s step (prompt #%s, %s)', b.kind, b.id, b.state);
            END IF;
        END IF;
        IF p.not_before > p_now AND p.attempts > 0 THEN
            RETURN format('retry at %s after attempt %s: %s%s', ps_health._clock(p.not_before), p.attempts,
                          coalesce(p.outcome, 'failed'), coalesce(': ' || left(p.detail, 120), ''));
        ELSIF p.not_before > p_now THEN
            RETURN 'rate-limited until ' || ps_health._clock(p.not_before);
        ELSIF p.host IS NULL THEN
            RETURN 'ready for any reactor';
        ELSIF NOT EXISTS (SELECT 1 FROM ps_health._live_reactors() r WHERE r.host = p.host) THEN
            RETURN format('waiting for a reactor on host %s (none running)', p.host);
        END IF;
        RETURN format('ready: the reactor of host %s takes it next', p.host);
    ELSIF p.state = 'claimed' THEN
        RETURN format('claimed by %s: typed once the pane is idle (lease until %s)', p.worker,
                      ps_health._clock(p.lease_until));
    END IF;
    RETURN p.detail;
END;
$$;
