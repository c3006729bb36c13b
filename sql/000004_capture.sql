-- Change capture. Every committed change that an active rule could match becomes one row of
-- workflow.events, written by a row trigger in the writer's own transaction.
--
-- Why row triggers with a WHEN clause: the WHEN clause is evaluated by the executor before any
-- trigger function is called, so a write no rule cares about costs one small function call. Each
-- trigger's WHEN calls a plpgsql function per entity and operation (capture_filter_*). When rules
-- change, only those functions are replaced (CREATE OR REPLACE FUNCTION takes no lock on the
-- table), in the same transaction as the rule change, so capture follows the rules atomically and
-- a DBA editing rules never blocks writers. Only registering or unregistering a table runs DDL on
-- it, under lock_timeout.
--
-- What a captured write costs was measured (pgbench and one-session loops on PostgreSQL 15, see
-- bench/capture.ts), and the shape below follows the numbers:
-- - The filters are plpgsql, not inlinable SQL functions: a trigger's WHEN clause is prepared again
--   for every statement, and inlining a SQL function parses its source each time (about 20 us per
--   single-row statement, captured or not). plpgsql keeps its compiled expression for the session;
--   the price is about 1 us per row of a bulk statement.
-- - Every CHECK constraint on workflow.events is compiled again for every captured row (each row's
--   INSERT runs in its own executor): about 5 us per row in bulk and more per single-row
--   statement. So workflow.events has none: operation and state are written only by rulebook's
--   own functions (the generated capture functions, run_rule, the scheduler, the engine), and a
--   role that may insert into workflow.events directly is trusted like those functions.
-- - The wake-up check is done inside the capture function, not by calling wake_daemons() (a second
--   SECURITY DEFINER call with its own search_path, about 20 us per transaction).
-- - The capture function has no SET search_path; every name in it is schema-qualified instead
--   (see write_capture_function): about 15 us per single-row transaction, nothing measurable in bulk.
-- - Rejected: a statement-level trigger with transition tables. It halves the cost of a bulk
--   INSERT, but it fires for every statement whether or not a rule cares (a single-row write no
--   rule watches cost about 40% more), must pair old and new rows of an UPDATE by their order in
--   the transition tables, and was no faster for single-row writes.

create table workflow.events (
  id bigint generated always as identity primary key,
  entity_id uuid not null,
  -- on_create, on_update, on_delete; manual (run_rule) and scheduled (a schedule's tick).
  operation text not null,
  row_key jsonb not null,
  old_row jsonb,
  new_row jsonb,
  txid xid8 not null default pg_current_xact_id(),
  actor_id text,
  -- How many rule executions led to this change: 0 for an application's own write.
  depth int not null default 0,
  created_at timestamptz not null default clock_timestamp(),
  -- 'pending', 'done' or 'dead'; no CHECK, which every captured row would pay for (see above).
  state text not null default 'pending',
  attempts int not null default 0,
  run_after timestamptz,
  locked_by text,
  locked_until timestamptz,
  last_error text,
  processed_at timestamptz
);

-- Events leave the table once handled (their execution rows keep what they were), so the primary
-- key alone finds pending work. Every index here is paid for by every captured write, which is why
-- there is no index on the row: daemons keep each row's events in order by looking at the head of
-- the queue (see src/engine/event-queue.ts).

comment on table workflow.events is
  'rulebook''s outbox: one row per captured change, written in the same transaction as the change.';

-- Daemons that are waiting for work. A writer NOTIFYs only when one is waiting, so that busy
-- systems never queue on the cluster-wide NOTIFY lock at commit. Unlogged: it describes
-- processes, which do not survive a crash either.
create unlogged table workflow.idle_daemons (
  daemon_id text primary key,
  since timestamptz not null default now()
);

-- Wakes a daemon when one is waiting, at most once per transaction. The capture functions do the
-- same inline, for the first change they capture in a transaction.
create function workflow.wake_daemons() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform set_config('rulebook.wake_checked', 'on', true);
  if exists (select 1 from workflow.idle_daemons) then
    perform pg_notify('rulebook_events', '');
  end if;
end
$$;

-- Each registered table gets its own capture function, with the entity id and the primary key
-- written into it, so that a captured row costs one INSERT and nothing else: no argument parsing,
-- no key extraction from the row's jsonb. It runs as the schema owner, so writers need no
-- privileges on workflow.
create function workflow.capture_function_name(p_entity_id uuid) returns text
language sql immutable as $$
  select format('capture_%s', replace(p_entity_id::text, '-', ''))
$$;

create function workflow.write_capture_function(p_entity_id uuid, p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  v_new_key text;
  v_old_key text;
  -- actor_id: null when unset or ''; depth: 0 when unset or ''. NULLIF, IS DISTINCT FROM and a
  -- simple CASE would look up "=" on the caller's search_path, so texteq is called by name.
  v_values text := $v$case when pg_catalog.texteq(pg_catalog.current_setting('workflow.actor_id', true), '') then null
                  else pg_catalog.current_setting('workflow.actor_id', true) end,
             case when pg_catalog.texteq(coalesce(pg_catalog.current_setting('rulebook.depth', true), ''), '') then 0
                  else pg_catalog.current_setting('rulebook.depth', true)::pg_catalog.int4 end$v$;
begin
  select 'pg_catalog.jsonb_build_object(' || string_agg(format('%L, new.%I', a.attname, a.attname), ', ' order by k.ord) || ')',
         'pg_catalog.jsonb_build_object(' || string_agg(format('%L, old.%I', a.attname, a.attname), ', ' order by k.ord) || ')'
    into v_new_key, v_old_key
    from pg_catalog.pg_index i
   cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = p_relation and i.indisprimary;
  -- SECURITY DEFINER without SET search_path: the SET clause costs every single-row write about
  -- 15 us (the setting is pushed and popped and the search path recomputed on every call). It is
  -- safe without it because nothing in the body is looked up on the caller's search_path: every
  -- table, function and type is schema-qualified, operators are written OPERATOR(pg_catalog.x) or
  -- called as functions, and no construct that looks up "=" implicitly (NULLIF, IS DISTINCT FROM,
  -- IN, simple CASE) is used. The caller's pg_temp, searched first for relations and types, is
  -- never searched for a qualified name. This is what "Writing SECURITY DEFINER Functions Safely"
  -- and the extension-script rules in the PostgreSQL documentation ask of such code. Column
  -- defaults and constraints of workflow.events are stored as parsed trees and are not affected.
  -- Keep it that way when editing: an unqualified name here would run the caller's object as the
  -- owner.
  execute format($f$
create or replace function workflow.%I() returns trigger
language plpgsql security definer
as $body$
begin
  if tg_op operator(pg_catalog.=) 'UPDATE' then
    insert into workflow.events (entity_id, operation, row_key, old_row, new_row, actor_id, depth)
    values (%L, 'on_update', %s, pg_catalog.to_jsonb(old), pg_catalog.to_jsonb(new), %s);
  elsif tg_op operator(pg_catalog.=) 'INSERT' then
    insert into workflow.events (entity_id, operation, row_key, new_row, actor_id, depth)
    values (%L, 'on_create', %s, pg_catalog.to_jsonb(new), %s);
  else
    insert into workflow.events (entity_id, operation, row_key, old_row, actor_id, depth)
    values (%L, 'on_delete', %s, pg_catalog.to_jsonb(old), %s);
  end if;
  -- Wake a waiting daemon once per transaction (what workflow.wake_daemons does, inline).
  if pg_catalog.current_setting('rulebook.wake_checked', true) is null
     or pg_catalog.current_setting('rulebook.wake_checked', true) operator(pg_catalog.<>) 'on' then
    perform pg_catalog.set_config('rulebook.wake_checked', 'on', true);
    if exists (select from workflow.idle_daemons) then
      perform pg_catalog.pg_notify('rulebook_events', '');
    end if;
  end if;
  return null;
end
$body$
$f$,
    workflow.capture_function_name(p_entity_id),
    p_entity_id, v_new_key, v_values,
    p_entity_id, v_new_key, v_values,
    p_entity_id, v_old_key, v_values);
end
$fn$;

create function workflow.capture_filter_name(p_entity_id uuid, p_operation text) returns text
language sql immutable as $$
  select format('capture_filter_%s_%s', replace(p_entity_id::text, '-', ''), p_operation)
$$;

-- "o.col is distinct from n.col" for one column; types without an equality operator of their own
-- (json, xml, point, ...) are compared as text.
create function workflow.column_changed_expr(p_relation regclass, p_column text) returns text
language sql stable as $$
  select case
    when exists (
      select 1 from pg_catalog.pg_operator op
      where op.oprname = '=' and op.oprleft = a.atttypid and op.oprright = a.atttypid
    )
    then format('o.%1$I is distinct from n.%1$I', a.attname)
    else format('o.%1$I::text is distinct from n.%1$I::text', a.attname)
  end
  from pg_catalog.pg_attribute a
  where a.attrelid = p_relation and a.attname = p_column and a.attnum > 0 and not a.attisdropped
$$;

-- Rewrites an entity's three capture filters from its active rules. Runs as the schema owner so
-- that the functions always have one owner, whoever edits the rules.
create function workflow.refresh_capture(p_entity_id uuid) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_entity workflow.entities;
  v_relation regclass;
  v_rowtype text;
  v_active boolean;
  v_insert text := 'false';
  v_delete text := 'false';
  v_update text := 'false';
  v_watch_all boolean;
  v_columns text[];
begin
  perform pg_advisory_xact_lock(hashtextextended('rulebook.capture:' || p_entity_id::text, 0));
  select * into v_entity from workflow.entities where id = p_entity_id;
  if not found then
    return;
  end if;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  if v_relation is null or (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('r', 'p') then
    return;
  end if;
  select format('%I.%I', n.nspname, c.relname) into v_rowtype
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = v_relation;
  v_active := v_entity.is_active is not false;

  if v_active then
    if exists (select 1 from workflow.automation_rules r join workflow.trigger_types t on t.id = r.trigger_type_id
               where r.entity_id = p_entity_id and r.is_active and t.name = 'on_create') then
      v_insert := 'true';
    end if;
    if exists (select 1 from workflow.automation_rules r join workflow.trigger_types t on t.id = r.trigger_type_id
               where r.entity_id = p_entity_id and r.is_active and t.name = 'on_delete') then
      v_delete := 'true';
    end if;
    select bool_or(coalesce(jsonb_array_length(
                     case jsonb_typeof(r.trigger_conditions -> 'field_conditions')
                       when 'array' then r.trigger_conditions -> 'field_conditions' end), 0) = 0),
           array(select distinct c ->> 'field_name'
                   from workflow.automation_rules r2
                   join workflow.trigger_types t2 on t2.id = r2.trigger_type_id
                   cross join lateral jsonb_array_elements(
                     case jsonb_typeof(r2.trigger_conditions -> 'field_conditions')
                       when 'array' then r2.trigger_conditions -> 'field_conditions' else '[]' end) c
                  where r2.entity_id = p_entity_id and r2.is_active and t2.name = 'on_update'
                  order by 1)
      into v_watch_all, v_columns
      from workflow.automation_rules r join workflow.trigger_types t on t.id = r.trigger_type_id
     where r.entity_id = p_entity_id and r.is_active and t.name = 'on_update';
    if v_watch_all then
      select array_agg(attname::text order by attnum) into v_columns
        from pg_catalog.pg_attribute
       where attrelid = v_relation and attnum > 0 and not attisdropped;
    end if;
    select coalesce(string_agg(e, ' or '), 'false') into v_update
      from (select workflow.column_changed_expr(v_relation, c) as e from unnest(v_columns) c) x
     where e is not null;
  end if;

  execute format('create or replace function workflow.%I(n %s) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'insert'), v_rowtype,
                 format('begin return %s; end', v_insert));
  execute format('create or replace function workflow.%I(o %s) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'delete'), v_rowtype,
                 format('begin return %s; end', v_delete));
  execute format('create or replace function workflow.%I(o %s, n %s) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'update'), v_rowtype, v_rowtype,
                 format('begin return %s; end', v_update));
end
$$;

-- Installs the three capture triggers on an entity's table. Runs as the caller, who needs the
-- TRIGGER privilege on the table; lock_timeout keeps a busy table from stalling behind the DDL.
create function workflow.install_capture(p_entity_id uuid) returns void
language plpgsql
set lock_timeout = '3s'
as $$
declare
  v_entity workflow.entities;
  v_entity_type text;
  v_relation regclass;
  v_relkind "char";
  v_key_args text;
begin
  select * into v_entity from workflow.entities where id = p_entity_id;
  select name into v_entity_type from workflow.entity_types where id = v_entity.entity_type_id;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  if v_relation is null then
    raise exception 'workflow.entities "%": there is no table or view %.%', v_entity.name,
      quote_ident(coalesce(v_entity.schema_name, 'public')), quote_ident(v_entity.name)
      using errcode = 'undefined_table',
            hint = 'name is the table name alone, unquoted and case-sensitive; schema_name holds its schema.';
  end if;
  select relkind into v_relkind from pg_catalog.pg_class where oid = v_relation;
  if v_entity_type = 'view' then
    if v_relkind not in ('v', 'm') then
      raise exception 'workflow.entities "%": % is not a view, but the entity type is "view"', v_entity.name, v_relation
        using errcode = 'wrong_object_type';
    end if;
    return;
  end if;
  if v_relkind not in ('r', 'p') then
    raise exception 'workflow.entities "%": % is not a table, but the entity type is "%"', v_entity.name,
      v_relation, v_entity_type
      using errcode = 'wrong_object_type';
  end if;
  select string_agg(a.attname, ', ' order by k.ord)
    into v_key_args
    from pg_catalog.pg_index i
    cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
    join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = v_relation and i.indisprimary;
  if v_key_args is null then
    raise exception 'workflow.entities "%": table % has no primary key', v_entity.name, v_relation
      using errcode = 'invalid_table_definition',
            hint = 'rulebook identifies changed rows by their primary key; add one before registering the table.';
  end if;

  perform workflow.refresh_capture(p_entity_id);
  perform workflow.write_capture_function(p_entity_id, v_relation);
  begin
    execute format('create or replace trigger rulebook_capture_insert after insert on %s for each row '
                   'when (workflow.%I(new)) execute function workflow.%I()',
                   v_relation, workflow.capture_filter_name(p_entity_id, 'insert'), workflow.capture_function_name(p_entity_id));
    execute format('create or replace trigger rulebook_capture_update after update on %s for each row '
                   'when (workflow.%I(old, new)) execute function workflow.%I()',
                   v_relation, workflow.capture_filter_name(p_entity_id, 'update'), workflow.capture_function_name(p_entity_id));
    execute format('create or replace trigger rulebook_capture_delete after delete on %s for each row '
                   'when (workflow.%I(old)) execute function workflow.%I()',
                   v_relation, workflow.capture_filter_name(p_entity_id, 'delete'), workflow.capture_function_name(p_entity_id));
  exception when lock_not_available then
    raise exception 'workflow.entities "%": % is busy; could not take the lock to install capture triggers within lock_timeout',
      v_entity.name, v_relation
      using errcode = 'lock_not_available',
            hint = 'Long transactions hold the table. Retry the statement; nothing was changed.';
  end;
end
$$;

-- The filters and the capture function belong to the schema owner, so they are dropped as the owner.
create function workflow.drop_capture_filters(p_entity_id uuid) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_operation text;
begin
  foreach v_operation in array array['insert', 'update', 'delete'] loop
    execute format('drop function if exists workflow.%I cascade', workflow.capture_filter_name(p_entity_id, v_operation));
  end loop;
  execute format('drop function if exists workflow.%I cascade', workflow.capture_function_name(p_entity_id));
end
$$;

create function workflow.remove_capture(p_entity_id uuid, p_schema_name text, p_name text) returns void
language plpgsql
set lock_timeout = '3s'
as $$
declare
  v_relation regclass := workflow.entity_relation(p_schema_name, p_name);
begin
  if v_relation is not null then
    begin
      execute format('drop trigger if exists rulebook_capture_insert on %s', v_relation);
      execute format('drop trigger if exists rulebook_capture_update on %s', v_relation);
      execute format('drop trigger if exists rulebook_capture_delete on %s', v_relation);
    exception when lock_not_available then
      raise exception 'workflow.entities "%": % is busy; could not take the lock to remove capture triggers within lock_timeout',
        p_name, v_relation
        using errcode = 'lock_not_available',
              hint = 'Long transactions hold the table. Retry the statement; nothing was changed.';
    end;
  end if;
  perform workflow.drop_capture_filters(p_entity_id);
end
$$;

create function workflow.entities_capture() returns trigger
language plpgsql as $$
begin
  if tg_op = 'INSERT' then
    perform workflow.install_capture(new.id);
  elsif tg_op = 'UPDATE' then
    if (old.schema_name, old.name, old.entity_type_id, old.id) is distinct from
       (new.schema_name, new.name, new.entity_type_id, new.id) then
      perform workflow.remove_capture(old.id, old.schema_name, old.name);
      perform workflow.install_capture(new.id);
    elsif old.is_active is distinct from new.is_active then
      perform workflow.refresh_capture(new.id);
    end if;
  else
    perform workflow.remove_capture(old.id, old.schema_name, old.name);
  end if;
  return null;
end
$$;

create trigger entities_capture after insert or update or delete on workflow.entities
  for each row execute function workflow.entities_capture();

create function workflow.rules_capture() returns trigger
language plpgsql as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    perform workflow.refresh_capture(old.entity_id);
  end if;
  if tg_op in ('INSERT', 'UPDATE') and (tg_op = 'INSERT' or new.entity_id <> old.entity_id) then
    perform workflow.refresh_capture(new.entity_id);
  end if;
  return null;
end
$$;

create trigger rules_capture after insert or update or delete on workflow.automation_rules
  for each row execute function workflow.rules_capture();

-- Columns can be renamed, dropped or added after rules were written; the filters name columns, so
-- they are rewritten after every ALTER TABLE of a registered table. Event triggers need a
-- superuser; without one, run `select workflow.refresh_capture(id) from workflow.entities` after
-- altering a registered table.
create function workflow.refresh_capture_after_ddl() returns event_trigger
language plpgsql as $$
declare
  v_entity_id uuid;
begin
  for v_entity_id in
    select e.id
      from pg_catalog.pg_event_trigger_ddl_commands() c
      join workflow.entities e on workflow.entity_relation(e.schema_name, e.name) = c.objid
     where c.classid = 'pg_catalog.pg_class'::regclass
  loop
    perform workflow.refresh_capture(v_entity_id);
  end loop;
end
$$;

do $$
begin
  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    create event trigger rulebook_refresh_capture on ddl_command_end
      when tag in ('ALTER TABLE')
      execute function workflow.refresh_capture_after_ddl();
  else
    raise notice 'rulebook: not a superuser, so capture filters are not refreshed after ALTER TABLE by themselves';
  end if;
end
$$;

-- Registers a table by its (optionally schema-qualified) name and returns the entity id.
create function workflow.register_entity(p_table text) returns uuid
language plpgsql as $$
declare
  v_relation regclass := to_regclass(p_table);
  v_schema text;
  v_name text;
  v_kind "char";
  v_id uuid;
begin
  if v_relation is null then
    raise exception 'register_entity: there is no table or view %', p_table
      using errcode = 'undefined_table',
            hint = 'Write the name as in SQL: sales.orders, or sales."Order Lines" for a name that needs quotes.';
  end if;
  select n.nspname, c.relname, c.relkind into v_schema, v_name, v_kind
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
   where c.oid = v_relation;
  insert into workflow.entities (name, schema_name, entity_type_id)
  values (v_name, v_schema,
          (select id from workflow.entity_types where name = case when v_kind in ('v', 'm') then 'view' else 'table' end))
  returning id into v_id;
  return v_id;
end
$$;

-- The columns whose values differ between an event's old and new row. Computed when read rather
-- than by the capture trigger, which keeps the writer's cost down.
create function workflow.changed_fields(p_old jsonb, p_new jsonb) returns text[]
language sql immutable parallel safe as $$
  select coalesce(array_agg(n.key order by n.key), '{}')
    from jsonb_each(p_new) n
    join jsonb_each(p_old) o on o.key = n.key
   where n.value is distinct from o.value
$$;

-- The outbox in the shape of the Debezium outbox event router (id, aggregatetype, aggregateid,
-- type, payload), so that events can be streamed on unchanged.
create view workflow.outbox as
select e.id,
       format('%s.%s', coalesce(en.schema_name, 'public'), en.name) as aggregatetype,
       e.row_key::text as aggregateid,
       e.operation as type,
       jsonb_build_object('old', e.old_row, 'new', e.new_row, 'changed_fields', to_jsonb(workflow.changed_fields(e.old_row, e.new_row)),
                          'actor_id', e.actor_id, 'txid', e.txid::text, 'depth', e.depth) as payload,
       e.created_at as "timestamp"
  from workflow.events e
  left join workflow.entities en on en.id = e.entity_id;
