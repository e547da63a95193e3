-- 0012: the planner is told that a prompt carries a few checks (prompt_items.prompt_id), so it looks a prompt's
-- items up by key on the way of every prompt, even after a burst of failures gave a few prompts thousands of them.
-- (Statistics are taken again at once: the setting counts from the next ANALYZE on.)
ALTER TABLE ps_health.prompt_items ALTER COLUMN prompt_id SET (n_distinct = -0.5);
ANALYZE ps_health.prompt_items;
