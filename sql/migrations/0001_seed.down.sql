-- Roll back the seed: drops the whole ps_health schema.
DROP SCHEMA ps_health CASCADE;
