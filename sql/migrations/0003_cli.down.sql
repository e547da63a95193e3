-- Roll back 0003: drop the CLI's statusline and status functions.

DROP FUNCTION ps_health.project_status(timestamptz);
DROP FUNCTION ps_health.statusline(text, text, text, numeric, integer, timestamptz);
