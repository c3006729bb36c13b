-- Writers learn that a daemon sleeps from a counter, not from a query (issue 11, "Capture: ahead of
-- the peer"; docs/capture-cost.md).
--
-- A capture function NOTIFYs only while some daemon waits in workflow.idle_daemons, so that busy
-- systems never queue on the cluster-wide NOTIFY lock at commit. It used to ask once per
-- transaction, with EXISTS (select from workflow.idle_daemons), a query through SPI, and remember
-- in the setting rulebook.wake_checked that it had (the first measurements put 15-19 us of CPU per
-- captured single-row transaction on the query; measured again, most of it was the setting).
-- Now it reads the unlogged sequence workflow.idle_daemons_count with pg_sequence_last_value, a
-- plpgsql simple expression (no SPI, no snapshot); the sequence's name is resolved once per session
-- when the expression is planned, and the plan is invalidated if the sequence is ever replaced.
--
-- The sequence holds how many rows workflow.idle_daemons has, kept by a statement trigger on that
-- table, so every writer of the table (the claim loops' SLEEPING/AWAKE statements, the engine's
-- cleanup at stop, an operator's DELETE, the benchmark's drainer) keeps it right without knowing.
-- setval is not transactional: the count is visible to writers as soon as it is set, before the
-- statement that changed the table commits. The races, and why each is harmless:
-- - Two loops change their idle state at once (concurrency 2, several daemons): each counts rows
--   under one transaction-level advisory lock, taken before its own change and held to its commit,
--   and counts with a fresh snapshot (READ COMMITTED; a volatile function's statements take one
--   each). So whichever commits last counted after the other had committed, and the last value
--   set is the table's true count. Without the lock, a loop going to sleep and one waking could
--   each miss the other's uncommitted change, and the waking one's 0 could come last while the
--   other sleeps: writers would stop waking it until its next poll.
-- - The count is set before the commit: a loop going to sleep is counted a moment early (a writer
--   NOTIFYs, the loop is still looking for work anyway: it announces its sleep, then looks once
--   more); a loop waking is uncounted a moment early (it is awake and claiming).
-- - A statement that rolls back after setting the count leaves it off by its own change: a loop
--   whose SLEEPING rolled back leaves a stale "idle", which costs a needless NOTIFY per writing
--   transaction until the next change recounts; a loop whose AWAKE failed reconnects, finds no
--   work or some, and its next SLEEPING or AWAKE recounts.
-- - A claim loop whose daemon died (SIGKILL, lost host) leaves its row; writers would NOTIFY for
--   it forever. Each row now records the backend that registered it (the loop's own, held
--   connection, which Postgres ends when the daemon's socket closes), and every registration
--   deletes the rows of backends that no longer exist before it counts. A reused pid keeps a dead
--   row alive only as long as that backend lives: a needless NOTIFY at worst.
-- - A crash empties the unlogged table and resets the unlogged sequence to its start (last value
--   unset, which reads as null: no NOTIFY); a clean restart keeps both.
-- - A transaction at REPEATABLE READ or above would count with its first snapshot; the engine's
--   statements run on their own (autocommit) at the session's default level, READ COMMITTED.
-- - A writer reads the count at every captured row (it used to check once per transaction, at
--   its first): a daemon that announces its sleep after the writer's last captured row and ends
--   its last look before the writer commits is woken by its poll, not by this writer. NOTIFY stays
--   a latency hint; polling stays on.
--
-- Measured (bench/capture-cost.ts, CPU of the writing backend, docs/capture-cost.md): a captured
-- single-row UPDATE transaction costs 5-6 us less (+39.3 -> +33.0 us over the same write to a table
-- without a trigger; Hasura-style +17.0 us), within noise of no wake-up check at all; bulk rows are
-- unchanged. Most of it is the once-per-transaction setting that is gone, not the EXISTS query,
-- which measured as the count on a freshly vacuumed idle_daemons (it grows with dead rows).

create unlogged sequence workflow.idle_daemons_count minvalue 0 start 0;

comment on sequence workflow.idle_daemons_count is
  'How many rows workflow.idle_daemons has (set by its trigger): capture functions NOTIFY only when it is above 0.';

alter table workflow.idle_daemons add column backend_pid integer default pg_backend_pid();

comment on column workflow.idle_daemons.backend_pid is
  'The backend of the claim loop that sleeps; a row whose backend is gone is deleted at the next registration.';

-- The lock is taken before the statement changes rows, so that every writer of the table takes
-- the lock first and row locks second: a loop upserting its row while another loop's registration
-- deletes that same row (its earlier connection died) waits for the lock, never the other way round.
create function workflow.lock_idle_daemons() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform pg_advisory_xact_lock(hashtextextended('rulebook.idle_daemons', 0));
  return null;
end
$$;

create trigger lock_idle_daemons before insert or delete or truncate on workflow.idle_daemons
  for each statement execute function workflow.lock_idle_daemons();

-- Runs holding the lock taken by lock_idle_daemons; each statement here takes a fresh snapshot.
create function workflow.count_idle_daemons() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'INSERT' and pg_trigger_depth() = 1 then
    delete from workflow.idle_daemons i
     where i.backend_pid is not null
       and not exists (select from pg_stat_activity a where a.pid = i.backend_pid);
  end if;
  perform setval('workflow.idle_daemons_count', (select count(*) from workflow.idle_daemons), true);
  return null;
end
$$;

create trigger count_idle_daemons after insert or delete or truncate on workflow.idle_daemons
  for each statement execute function workflow.count_idle_daemons();

select setval('workflow.idle_daemons_count', (select count(*) from workflow.idle_daemons), true);

-- Capture functions read the count; the roles that may write workflow.idle_daemons keep it.
grant select on sequence workflow.idle_daemons_count to rulebook_capture;
grant select, update on sequence workflow.idle_daemons_count to rulebook_daemon, rulebook_admin;
revoke select on workflow.idle_daemons from rulebook_capture;

-- What the capture functions do inline, for the run_rule, scheduler, view poll and WAL capture
-- paths.
create or replace function workflow.wake_daemons() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if pg_sequence_last_value('workflow.idle_daemons_count'::regclass) > 0 then
    perform pg_notify('rulebook_events', '');
  end if;
end
$$;

-- 000015's generator; the wake-up check reads the count, for every captured row: the setting
-- 'rulebook.wake_checked' that limited the check to once per transaction cost more than the count
-- read (set_config through SPI and a GUC stack entry per transaction; docs/capture-cost.md), and
-- pg_notify sends a transaction's identical notifications once.
create or replace function workflow.write_capture_function(p_entity_id uuid, p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set check_function_bodies = on
as $fn$
declare
  v_name text := workflow.capture_function_name(p_entity_id);
  v_schema name;
  v_table name;
  v_relkind "char";
  v_is_partition boolean;
  v_owner name;
  v_new_key text;
  v_old_key text;
  v_body text;
  v_values text := $v$case when pg_catalog.texteq(pg_catalog.current_setting('workflow.actor_id', true), '') then null
                  else pg_catalog.current_setting('workflow.actor_id', true) end,
             case when pg_catalog.textregexeq(pg_catalog.current_setting('rulebook.depth', true), '^[0-9]{1,9}$')
                       and pg_catalog.pg_has_role(session_user, 'rulebook_daemon', 'MEMBER')
                  then pg_catalog.current_setting('rulebook.depth', true)::pg_catalog.int4
                  else 0 end$v$;
begin
  select n.nspname, c.relname, c.relkind, c.relispartition, pg_catalog.pg_get_userbyid(c.relowner)
    into v_schema, v_table, v_relkind, v_is_partition, v_owner
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = p_relation;
  if v_is_partition then
    raise exception 'workflow.entities: % is a partition of %; register the partitioned table, whose capture covers every partition',
      p_relation, pg_catalog.pg_partition_root(p_relation)
      using errcode = 'wrong_object_type';
  end if;
  perform workflow.check_capture_safety(
    coalesce((select name from workflow.entities where id = p_entity_id), p_entity_id::text), p_relation);
  select 'pg_catalog.jsonb_build_object(' || string_agg(format('%L, new.%I', a.attname, a.attname), ', ' order by k.ord) || ')',
         'pg_catalog.jsonb_build_object(' || string_agg(format('%L, old.%I', a.attname, a.attname), ', ' order by k.ord) || ')'
    into v_new_key, v_old_key
    from pg_catalog.pg_index i
   cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = p_relation and i.indisprimary;
  if v_new_key is null then
    raise exception 'workflow.entities: table % has no primary key', p_relation
      using errcode = 'invalid_table_definition',
            hint = 'rulebook identifies changed rows by their primary key; add one before registering the table.';
  end if;
  -- No SET search_path, and every name schema-qualified: see 000004_capture.sql.
  v_body := format($t$
begin
  if tg_relid operator(pg_catalog.<>) %1$s::pg_catalog.oid then
    if not exists (
         select from pg_catalog.pg_class c
           join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) c.relnamespace
          where c.oid operator(pg_catalog.=) coalesce(pg_catalog.pg_partition_root(tg_relid)::pg_catalog.oid, tg_relid)
            and (c.oid operator(pg_catalog.=) %1$s::pg_catalog.oid
                 or (c.relname operator(pg_catalog.=) %2$L::pg_catalog.name
                     and n.nspname operator(pg_catalog.=) %3$L::pg_catalog.name))) then
      raise exception 'rulebook: capture function workflow.%% belongs to %% and refuses to run for %%.%%', %4$L, %5$L,
        tg_table_schema, tg_table_name
        using errcode = 'insufficient_privilege';
    end if;
  end if;
  if tg_op operator(pg_catalog.=) 'UPDATE' then
    insert into workflow.events (entity_id, aggregate_type, operation, row_key, old_row, new_row, actor_id, depth)
    values (%6$L, %10$L, 'on_update', %7$s, pg_catalog.to_jsonb(old), pg_catalog.to_jsonb(new), %9$s);
  elsif tg_op operator(pg_catalog.=) 'INSERT' then
    insert into workflow.events (entity_id, aggregate_type, operation, row_key, new_row, actor_id, depth)
    values (%6$L, %10$L, 'on_create', %7$s, pg_catalog.to_jsonb(new), %9$s);
  else
    insert into workflow.events (entity_id, aggregate_type, operation, row_key, old_row, actor_id, depth)
    values (%6$L, %10$L, 'on_delete', %8$s, pg_catalog.to_jsonb(old), %9$s);
  end if;
  -- Wake a waiting daemon (what workflow.wake_daemons does, inline): the count is read for every
  -- row, which costs less than remembering in a setting that the transaction has checked; a
  -- transaction's identical notifications are sent once.
  if pg_catalog.pg_sequence_last_value('workflow.idle_daemons_count'::pg_catalog.regclass) operator(pg_catalog.>) 0 then
    perform pg_catalog.pg_notify('rulebook_events', '');
  end if;
  return null;
end
$t$,
    p_relation::oid, v_table, v_schema, v_name, format('%I.%I', v_schema, v_table),
    p_entity_id, v_new_key, v_old_key, v_values,
    coalesce((select workflow.outbox_aggregate_type(e.schema_name, e.name) from workflow.entities e where e.id = p_entity_id),
             workflow.outbox_aggregate_type(v_schema, v_table)));
  execute format('create or replace function workflow.%I() returns trigger language plpgsql security definer as %L',
                 v_name, v_body);
  -- EXECUTE is checked when a trigger is created, not when it fires: rulebook_admin registers
  -- tables (install_capture runs as the caller, whose TRIGGER privilege on the table is the gate).
  execute format('revoke all on function workflow.%I() from public', v_name);
  execute format('grant execute on function workflow.%I() to rulebook_admin', v_name);
  -- CREATE TABLE ... PARTITION OF and ATTACH PARTITION clone the table's triggers onto the
  -- partition, checking EXECUTE on their function as the role running the DDL: the table's owner.
  -- The function refuses to run outside the table's partition tree, so the grant lets the owner
  -- forge nothing it could not write into the table anyway.
  if v_relkind = 'p' then
    execute format('grant execute on function workflow.%I() to %I', v_name, v_owner);
  end if;
  -- A non-superuser may give an object only to a role that may create in its schema. CREATE on
  -- workflow would let code running as rulebook_capture add functions there, so it holds for
  -- this statement only (and nobody else sees it: the transaction has not committed).
  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    execute format('alter function workflow.%I() owner to rulebook_capture', v_name);
  else
    grant create on schema workflow to rulebook_capture;
    execute format('alter function workflow.%I() owner to rulebook_capture', v_name);
    revoke create on schema workflow from rulebook_capture;
  end if;
end
$fn$;


-- Every table's capture function again, to read the count (as 000015 did; a table whose function
-- cannot be rewritten keeps the old one, which still reads workflow.idle_daemons: write_capture_function
-- says why in a warning, and rulebook_capture keeps reading the table until then).
do $$
declare
  v record;
  v_message text;
  v_kept integer := 0;
begin
  for v in
    select e.id, workflow.entity_relation(e.schema_name, e.name) as relation
      from workflow.entities e
     where to_regprocedure(format('workflow.%I()', workflow.capture_function_name(e.id))) is not null
  loop
    continue when v.relation is null;
    begin
      perform workflow.write_capture_function(v.id, v.relation);
    exception when others then
      get stacked diagnostics v_message = message_text;
      v_kept := v_kept + 1;
      raise warning 'rulebook: the capture function of % was not rewritten (%); it keeps checking workflow.idle_daemons by a query',
        v.relation, v_message;
    end;
  end loop;
  if v_kept > 0 then
    grant select on workflow.idle_daemons to rulebook_capture;
  end if;
end
$$;

-- workflow.count_idle_daemons: EXECUTE revoked from PUBLIC, as for every function in workflow.
select workflow.apply_privileges();
