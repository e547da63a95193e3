-- ps-health schema, the declared end state. Files 00-19 hold tables, their indexes and
-- constraints ("state": created once on a fresh database; a change here also needs an ALTER
-- in a delta under sql/migrations/). Files 20 and up hold functions, views, triggers and
-- reference rows ("code"): `ps-health migrate` reloads them whenever they change.

CREATE SCHEMA ps_health;
