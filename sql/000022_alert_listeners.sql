-- Alert streams that are listening. create_alert and the staff API NOTIFY rulebook_alerts only while
-- one is, because every NOTIFY takes the cluster-wide notify queue lock from pre-commit until its
-- commit record is flushed: with an alert per event, the engine's commits queued on that lock
-- behind one another (measured by bench/retention.ts: waits of 256 ms while pruning's WAL made the
-- flushes slow), for pages that were mostly not open.
--
-- A stream registers the application_name of its LISTEN connection, a name it makes unique
-- ('rulebook-alert-stream <uuid>'), rather than a backend pid: the name follows the listener
-- across reconnections, and it is gone from pg_stat_activity as soon as that connection is, so a
-- server that died without unregistering stops every writer's NOTIFY at once (a pid could be
-- reused by a connection that lives for days). Such leftover rows are deleted by the next stream
-- that registers. Unlogged, like idle_daemons: it describes connections, which do not survive a
-- crash either.
create unlogged table workflow.alert_listeners (
  listener text primary key check (listener ~ '^rulebook-alert-stream '),
  since timestamptz not null default now()
);

comment on table workflow.alert_listeners is
  'Open alert streams (their LISTEN connection''s application_name): rulebook_alerts is NOTIFYed only while one is connected.';

-- Whether an alert stream listens now. The activity of other connections is read only when a row
-- exists, so that a system without open pages pays one look at an empty table per statement.
-- application_name is shown to every role by pg_stat_get_activity. Granted like every workflow
-- function by workflow.apply_privileges (rulebook_admin, rulebook_daemon).
create function workflow.alert_stream_listening() returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select from workflow.alert_listeners l
     where exists (select from pg_catalog.pg_stat_get_activity(null) a where a.application_name = l.listener))
$$;
