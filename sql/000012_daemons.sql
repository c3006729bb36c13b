-- What an operator needs to see and redo (`rulebook status`, `rulebook deliveries retry`):
--   workflow.daemons            one row per daemon process: written at start, on every heartbeat and
--                               at a clean stop (src/heartbeat.ts).
--   workflow.delivery_retries   what a failed or bounced delivery had been through before an operator
--                               put it back to pending (workflow.retry_deliveries).

-- A daemon is alive while its last heartbeat is younger than three of its own intervals: each row
-- carries its interval, so that `rulebook status` needs no setting of the daemon's to judge it.
-- Logged (not unlogged like idle_daemons): after a crash the row is what says a daemon went away.
create table workflow.daemons (
  id text primary key,
  host text not null,
  pid integer not null,
  version text not null,
  started_at timestamptz not null default now(),
  last_heartbeat_at timestamptz not null default now(),
  heartbeat_interval_ms integer not null check (heartbeat_interval_ms > 0),
  stopped_at timestamptz
);

comment on table workflow.daemons is
  'rulebook daemons, one row per process: heartbeats every heartbeat_interval_ms; gone when the last is older than 3 intervals. Rows stopped or gone for more than a day are deleted by running daemons (at start, then hourly).';

-- Deletes daemons that stopped, or stopped heartbeating, longer ago than p_keep; returns how many.
-- search_path is pinned in both functions here: the daemon and admins call them, and an operator
-- such as integer * interval, resolved through a schema the caller can be made to search, would
-- otherwise run someone else's code with their privileges.
create function workflow.prune_daemons(p_keep interval default '1 day') returns bigint
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_count bigint;
begin
  delete from workflow.daemons
   where coalesce(stopped_at, last_heartbeat_at + 3 * heartbeat_interval_ms * interval '1 millisecond')
         < now() - p_keep;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- One row per retry of a delivery by an operator: the delivery as it was just before. The delivery
-- row itself keeps its id (so its Message-ID and Idempotency-Key, both derived from the id, stay the
-- same) and starts over at attempts 0, so that DELIVERY_MAX_ATTEMPTS applies afresh.
create table workflow.delivery_retries (
  id bigint generated always as identity primary key,
  delivery_id uuid not null references workflow.notification_deliveries (id) on delete cascade,
  retried_at timestamptz not null default now(),
  retried_by text not null default current_user,
  status varchar(20) not null,
  attempts integer,
  sent_at timestamp,
  failed_at timestamp,
  error_message text,
  provider_response jsonb
);

create index idx_delivery_retries_delivery on workflow.delivery_retries (delivery_id);

comment on table workflow.delivery_retries is
  'What a failed or bounced delivery had been through (attempts, error, provider response) before `rulebook deliveries retry` put it back to pending; deleted with its delivery.';

-- Puts failed or bounced deliveries back to pending, keeping what they had been through in
-- workflow.delivery_retries. Deliveries in any other status are left alone (a delivery sent in
-- the meantime is not sent twice). Returns the ids retried. Callers pass small batches.
-- The history is taken from the rows as locked (FOR UPDATE returns their latest version), not from
-- the statement's snapshot, which may predate a change committed while the lock was awaited.
create function workflow.retry_deliveries(p_ids uuid[]) returns setof uuid
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  return query
  with target as (
    select d.id, d.status, d.attempts, d.sent_at, d.failed_at, d.error_message, d.provider_response
      from workflow.notification_deliveries d
     where d.id = any(p_ids) and d.status in ('failed', 'bounced')
     for update
  ), history as (
    insert into workflow.delivery_retries (delivery_id, status, attempts, sent_at, failed_at, error_message,
                                           provider_response)
    select t.id, t.status, t.attempts, t.sent_at, t.failed_at, t.error_message, t.provider_response
      from target t
  )
  update workflow.notification_deliveries d
     set status = 'pending', attempts = 0, failed_at = null, error_message = null, provider_response = null
    from target t
   where d.id = t.id
  returning d.id;
end
$$;

-- A rule's last runs (`rules list`, `rules show`, `executions --rule`). Without it the planner walks
-- idx_automation_executions_date backwards filtering on the rule, which for a rule that rarely or
-- never ran reads the whole table: `rules list` on 300,000 executions and 5 rules took 860 ms, and
-- grows with rules x executions. With it each rule is one index probe. Its cost to the engine's
-- execution insert was below the noise of a measurement (3 x 30,000 single-row inserts with and
-- without it, alternating, on a shared 2-core machine: 2.7-3.2 s either way).
create index idx_automation_executions_rule_executed on workflow.automation_executions (automation_rules_id, executed_at);

-- apply_privileges as in 000010, plus: workflow.daemons is the daemons' own record, which admins
-- read but do not write.
create or replace function workflow.apply_privileges() returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
begin
  for v in
    select p.oid::regprocedure as fn, p.proname
      from pg_proc p
     where p.pronamespace = 'workflow'::regnamespace
  loop
    if v.proname ~ '^capture_filter_[0-9a-f]{32}_(insert|update|delete)$' then
      execute format('grant execute on function %s to public', v.fn);
    elsif v.proname ~ '^capture_[0-9a-f]{32}$' then
      execute format('revoke all on function %s from public, rulebook_daemon, rulebook_outbox_reader', v.fn);
      execute format('grant execute on function %s to rulebook_admin', v.fn);
    else
      execute format('revoke all on function %s from public', v.fn);
      if v.proname <> 'apply_privileges' then
        execute format('grant execute on function %s to rulebook_admin, rulebook_daemon', v.fn);
      end if;
    end if;
  end loop;

  grant usage on schema workflow to rulebook_admin, rulebook_daemon, rulebook_outbox_reader;
  grant select, insert, update, delete on all tables in schema workflow to rulebook_admin, rulebook_daemon;
  grant usage, select on all sequences in schema workflow to rulebook_admin, rulebook_daemon;
  grant select on workflow.outbox, workflow.events to rulebook_outbox_reader;
  -- postgres-migrations' bookkeeping: only the installing role writes it.
  if to_regclass('workflow.migrations') is not null then
    revoke insert, update, delete on workflow.migrations from rulebook_admin, rulebook_daemon;
  end if;
  if to_regclass('workflow.daemons') is not null then
    revoke insert, update, delete on workflow.daemons from rulebook_admin;
  end if;
  grant execute on function workflow.changed_fields(jsonb, jsonb) to rulebook_outbox_reader;

  -- core may belong to the application (000001 keeps tables that exist): grant what can be granted.
  begin
    grant usage on schema core to rulebook_admin, rulebook_daemon;
    grant select on core.users, core.roles, core.user_roles to rulebook_daemon;
    grant select, insert, update on core.api_tokens to rulebook_daemon;
    grant select, insert, update, delete on core.users, core.roles, core.user_roles, core.api_tokens to rulebook_admin;
  exception when insufficient_privilege then
    raise notice 'rulebook: % may not grant on core; grant rulebook_daemon read access to core.users, core.roles and core.user_roles, and read/write access to core.api_tokens', current_user;
  end;
end
$$;

select workflow.apply_privileges();
