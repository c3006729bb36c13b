-- Views that fire like tables (docs/views.md). A view has no rows of its own to put triggers on, so
-- the daemon polls it: each poll diffs the view against the previous snapshot, in SQL, and writes
-- on_create / on_update / on_delete events into workflow.events in the transaction that updates the
-- snapshot, so the engine runs ordinary rules on them and a crash either does both or neither.
--
-- The key columns and the poll interval live in a table of their own rather than in new columns of
-- workflow.entities: entities is a contract table, whose columns must stay as the schema document
-- gives them (test/schema.test.ts holds it to that).

create table workflow.view_entities (
  entity_id uuid primary key references workflow.entities (id) on delete cascade,
  -- The columns that identify a row of the view, as a primary key identifies a table's rows.
  key_columns text[] not null,
  poll_interval interval not null default '1 minute',
  -- When the current snapshot was taken; null until the first poll, which takes it without firing.
  snapshot_at timestamptz,
  -- The TimeZone the snapshot was read in; later polls read the view in it too (see poll_view).
  snapshot_timezone text,
  last_polled_at timestamptz,
  -- Why the last poll did not update the snapshot (a duplicate key, a dropped view), or null.
  last_error text,
  last_error_at timestamptz
);

comment on table workflow.view_entities is
  'Views registered for change rules: their key columns and poll interval, and how their last poll went.';

-- One row per row of the view as the last poll saw it. The whole row is kept (not only a hash):
-- an on_update event carries the old row, and a row compared as jsonb needs nothing computed from
-- the view's side; bench/views.ts measured both (docs/views.md has the figures).
create table workflow.view_snapshots (
  entity_id uuid not null references workflow.view_entities (entity_id) on delete cascade,
  row_key jsonb not null,
  row jsonb not null,
  primary key (entity_id, row_key)
);

comment on table workflow.view_snapshots is
  'What each polled view held at its last poll, one row per view row, keyed by its key columns.';

-- The key as a jsonb object, built from the view row aliased v, in key column order.
create function workflow.view_key_expr(p_key_columns text[]) returns text
language sql immutable as $$
  select 'pg_catalog.jsonb_build_object(' || string_agg(format('%L, v.%I', c, c), ', ' order by o) || ')'
    from unnest(p_key_columns) with ordinality as k (c, o)
$$;

-- What reading a view runs as the reader: functions its query calls (directly, through operators,
-- or through the views and row security policies it reads, and the views those policies read),
-- the check constraints of domains it casts to, and the casts to json and output functions
-- to_jsonb calls for its columns (capture_hazards). A poll reads the view as the daemon, so code
-- of a role that is not a superuser (the application's own functions, say) would run with the
-- daemon's privileges on workflow: such views are refused, like tables whose capture would run
-- such code (000010_privileges.sql). A superuser-owned function is code a superuser vouched for.
-- Only SELECT rules count (ev_type '1'): a table's INSERT/UPDATE/DELETE rules do not run on a read.
-- Not listed because no role but a superuser can create them: operator classes (sorts, hashes and
-- index scans call their support functions), base types' input/output functions, C functions.
-- Column defaults, triggers and non-SELECT rules of the tables read do not run when they are read.
create function workflow.view_hazards(p_relation regclass)
returns table (relation regclass, hazard text, function_name regprocedure, function_owner name)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  with recursive sources (relation, what, classid, objid) as (
    select rw.ev_class, 'the view', 'pg_rewrite'::regclass, rw.oid
      from pg_rewrite rw
     where rw.ev_type = '1'
    union all
    select pol.polrelid, format('row security policy %I', pol.polname), 'pg_policy'::regclass, pol.oid
      from pg_policy pol
  ), reached (oid, depth) as (
    select p_relation::oid, 0
    union
    select d.refobjid, r.depth + 1
      from reached r
      join sources s on s.relation = r.oid
      join pg_depend d on d.classid = s.classid and d.objid = s.objid
                      and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.oid
     -- Views cannot contain themselves; the bound only keeps a damaged catalog from looping.
     where r.depth < 32
  ), reached_sources (relation, what, classid, objid) as (
    select s.relation, s.what, s.classid, s.objid
      from reached r
      join sources s on s.relation = r.oid
  ), domains (relation, type_oid, depth) as (
    -- A cast to a domain (CoerceToDomain) is recorded as a dependency on the domain's type; its
    -- checks, and those of the domains it is based on, run on every row cast.
    select distinct rs.relation, d.refobjid, 0
      from reached_sources rs
      join pg_depend d on d.classid = rs.classid and d.objid = rs.objid and d.refclassid = 'pg_type'::regclass
    union
    select dm.relation, next_type.oid, dm.depth + 1
      from domains dm
      join pg_type t on t.oid = dm.type_oid
     cross join lateral (
       select t.typbasetype where t.typtype = 'd'
       union all
       select t.typelem where t.typelem <> 0
     ) next_type (oid)
     where dm.depth < 32
  ), all_sources (relation, what, classid, objid) as (
    select rs.relation, rs.what, rs.classid, rs.objid from reached_sources rs
    union all
    select dm.relation, format('check constraint %I of domain %s', con.conname, con.contypid::regtype),
           'pg_constraint'::regclass, con.oid
      from domains dm
      join pg_constraint con on con.contypid = dm.type_oid
  ), called (relation, hazard, fn) as (
    select s.relation, 'function called by ' || s.what, d.refobjid
      from all_sources s
      join pg_depend d on d.classid = s.classid and d.objid = s.objid and d.refclassid = 'pg_proc'::regclass
    union all
    select s.relation, format('operator %s used by %s', op.oid::regoperator, s.what), op.oprcode::oid
      from all_sources s
      join pg_depend d on d.classid = s.classid and d.objid = s.objid and d.refclassid = 'pg_operator'::regclass
      join pg_operator op on op.oid = d.refobjid
  )
  select distinct c.relation::regclass, c.hazard, p.oid::regprocedure, o.rolname
    from called c
    join pg_proc p on p.oid = c.fn
    join pg_roles o on o.oid = p.proowner
   where not o.rolsuper
  union
  select p_relation, format('%s of column %I', h.hazard, h.column_name), h.function_name, h.function_owner
    from workflow.capture_hazards(p_relation) h
$$;

-- Refuses a view whose reading would run code of a role that is not a superuser (view_hazards).
create function workflow.check_view_safety(p_entity_name text, p_relation regclass) returns void
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
begin
  select * into v from workflow.view_hazards(p_relation) order by 1, 3 limit 1;
  if found then
    raise exception 'workflow.view_entities "%": reading % runs %, owned by %, which is not a superuser (%); a poll would run it as the daemon',
      p_entity_name, p_relation, v.function_name, quote_ident(v.function_owner), v.hazard
      using errcode = 'insufficient_privilege',
            hint = format('Have a superuser review %s and take it over (alter function %s owner to a superuser), or poll a view that does not call it; see docs/views.md.',
                          v.function_name, v.function_name);
  end if;
end
$$;

-- Checks a view registration: the entity is a view, its key columns exist in it and identify its
-- rows (checked once here; every poll checks again), and the interval is positive. Not on the
-- updates a poll makes, which must record a problem even when the view has become one.
create function workflow.check_view_entity() returns trigger
language plpgsql as $$
declare
  v_entity workflow.entities;
  v_entity_type text;
  v_relation regclass;
  v_missing text[];
  v_duplicate jsonb;
begin
  select * into v_entity from workflow.entities where id = new.entity_id;
  if not found then
    return new; -- the foreign key reports it
  end if;
  select name into v_entity_type from workflow.entity_types where id = v_entity.entity_type_id;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  if v_entity_type is distinct from 'view' or v_relation is null
     or (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('v', 'm') then
    raise exception 'workflow.view_entities: entity "%" is not a view; only views are polled (tables are captured by triggers)',
      v_entity.name
      using errcode = 'wrong_object_type';
  end if;
  if cardinality(new.key_columns) is null or cardinality(new.key_columns) = 0
     or array_position(new.key_columns, null) is not null then
    raise exception 'workflow.view_entities "%": key_columns must name at least one column, got %',
      v_entity.name, coalesce(new.key_columns::text, 'null')
      using errcode = 'invalid_parameter_value',
            hint = 'Name the columns that identify a row of the view, as a primary key would: {invoice_id}.';
  end if;
  if cardinality(new.key_columns) <> (select count(distinct c) from unnest(new.key_columns) c) then
    raise exception 'workflow.view_entities "%": key_columns % names a column twice', v_entity.name, new.key_columns
      using errcode = 'invalid_parameter_value';
  end if;
  select array_agg(c order by o) into v_missing
    from unnest(new.key_columns) with ordinality as k (c, o)
   where not exists (select 1 from pg_catalog.pg_attribute a
                      where a.attrelid = v_relation and a.attname = c and a.attnum > 0 and not a.attisdropped);
  if v_missing is not null then
    raise exception 'workflow.view_entities "%": key column(s) % are not columns of %',
      v_entity.name, array_to_string(v_missing, ', '), v_relation
      using errcode = 'undefined_column',
            hint = format('Columns of %s: %s.', v_relation,
                          (select string_agg(quote_ident(attname), ', ' order by attnum) from pg_catalog.pg_attribute
                            where attrelid = v_relation and attnum > 0 and not attisdropped));
  end if;
  -- Locked before the check, as in poll_view, so that the read below runs what was checked.
  if (select relkind from pg_catalog.pg_class where oid = v_relation) = 'v' then
    execute format('lock table %s in access share mode', v_relation);
  end if;
  perform workflow.check_view_safety(v_entity.name, v_relation);
  if new.poll_interval <= interval '0' then
    raise exception 'workflow.view_entities "%": poll_interval must be positive, got %', v_entity.name, new.poll_interval
      using errcode = 'invalid_parameter_value';
  end if;
  if tg_op = 'UPDATE' and new.key_columns is not distinct from old.key_columns then
    return new;
  end if;
  -- Reads the view once, as the registering role; a rare statement, so a full read is affordable.
  execute format('select row_key from (select %s as row_key from %s v) k group by row_key having count(*) > 1 limit 1',
                 workflow.view_key_expr(new.key_columns), v_relation)
    into v_duplicate;
  if v_duplicate is not null then
    raise exception 'workflow.view_entities "%": key column(s) % do not identify the rows of %: the key % appears more than once',
      v_entity.name, array_to_string(new.key_columns, ', '), v_relation, v_duplicate
      using errcode = 'unique_violation',
            hint = 'Choose key columns that are unique in the view, or make the view return one row per key.';
  end if;
  -- Other keys make the snapshot meaningless: the next poll takes a new one without firing.
  if tg_op = 'UPDATE' then
    delete from workflow.view_snapshots where entity_id = new.entity_id;
    new.snapshot_at := null;
  end if;
  return new;
end
$$;

create trigger check_view_entity before insert or update of key_columns, poll_interval on workflow.view_entities
  for each row execute function workflow.check_view_entity();

-- Change rules on a view need its key columns; dropping them would leave such rules silent.
create function workflow.check_view_entity_delete() returns trigger
language plpgsql as $$
declare
  v_rules text;
begin
  select string_agg(format('"%s"', r.name), ', ' order by r.name) into v_rules
    from workflow.automation_rules r
    join workflow.trigger_types t on t.id = r.trigger_type_id
   where r.entity_id = old.entity_id and r.is_active and t.name in ('on_create', 'on_update', 'on_delete');
  if v_rules is not null and exists (select 1 from workflow.entities where id = old.entity_id) then
    raise exception 'workflow.view_entities: the view''s active change rules % need its key columns', v_rules
      using errcode = 'dependent_objects_still_exist',
            hint = 'Deactivate those rules first.';
  end if;
  return old;
end
$$;

create trigger check_view_entity_delete before delete on workflow.view_entities
  for each row execute function workflow.check_view_entity_delete();

-- Deactivating a view or pointing the entity elsewhere drops its snapshot: what it held no longer
-- describes what the next poll will read. Reactivated, the view's first poll takes a new snapshot
-- without firing (changes made while it was inactive are not replayed).
create function workflow.reset_view_snapshot() returns trigger
language plpgsql as $$
begin
  if new.is_active is false or (old.schema_name, old.name) is distinct from (new.schema_name, new.name) then
    delete from workflow.view_snapshots where entity_id = new.id;
    update workflow.view_entities set snapshot_at = null where entity_id = new.id and snapshot_at is not null;
  end if;
  return null;
end
$$;

create trigger reset_view_snapshot after update of is_active, schema_name, name on workflow.entities
  for each row execute function workflow.reset_view_snapshot();

-- Registers a view for change rules (and the entity, if it is not registered yet); returns the
-- entity id. Calling it again changes the key columns or the interval.
create function workflow.register_view(p_view text, p_key_columns text[], p_poll_interval interval default '1 minute')
returns uuid
language plpgsql as $$
declare
  v_relation regclass := to_regclass(p_view);
  v_id uuid;
begin
  if v_relation is null then
    raise exception 'register_view: there is no view %', p_view
      using errcode = 'undefined_table',
            hint = 'Write the name as in SQL: sales.overdue_invoices, or sales."Overdue Invoices" for a name that needs quotes.';
  end if;
  -- Before registering anything: a table would otherwise get capture triggers first.
  if (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('v', 'm') then
    raise exception 'register_view: % is not a view; tables are captured by triggers (workflow.register_entity)', v_relation
      using errcode = 'wrong_object_type';
  end if;
  select e.id into v_id
    from workflow.entities e
   where workflow.entity_relation(e.schema_name, e.name) = v_relation;
  if v_id is null then
    v_id := workflow.register_entity(p_view);
  end if;
  insert into workflow.view_entities (entity_id, key_columns, poll_interval)
  values (v_id, p_key_columns, coalesce(p_poll_interval, interval '1 minute'))
  on conflict (entity_id) do update
    set key_columns = excluded.key_columns, poll_interval = excluded.poll_interval;
  return v_id;
end
$$;

-- Polls one view: diffs it against its snapshot and writes the differences as events, in one
-- statement, then records the poll. Returns what happened as jsonb:
--   {"status": "polled", "created": n, "updated": n, "deleted": n}  events written (counts)
--   {"status": "snapshot", "rows": n}       the first poll: snapshot taken, nothing fired
--   {"status": "duplicate_key", "key": k}   the key is not unique in the view; snapshot untouched
--   {"status": "error", "message": m, "sqlstate": s}  the view could not be read; snapshot untouched
--   {"status": "busy"}      another session is polling it now
--   {"status": "not_due"}   polled less than poll_interval ago (unless p_force)
--   {"status": "idle"}      no active change rule watches it; its snapshot is dropped
--   {"status": "inactive"}  the entity is inactive or not a registered view
-- The row lock on view_entities (SKIP LOCKED) is what makes a poll run once across daemons.
-- to_jsonb's rendering of times, intervals and floats depends on settings, so daemons with other
-- session settings would see every row as changed. IntervalStyle, extra_float_digits and
-- bytea_output are pinned.
-- TimeZone also decides what the view computes (current_date, a cast to date), so it is not pinned
-- to one value: the first poll reads the view in its session's TimeZone (the database's default
-- unless the daemon sets one), records it, and later polls read the view in that one.
create function workflow.poll_view(p_entity_id uuid, p_force boolean default false) returns jsonb
language plpgsql
set search_path = pg_catalog, pg_temp
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
as $$
declare
  v_view workflow.view_entities;
  v_entity workflow.entities;
  v_relation regclass;
  v_operations text[];
  v_first boolean;
  v_result record;
  v_message text;
  v_state text;
  v_reading boolean := false;
  v_session_timezone text := current_setting('TimeZone');
  v_timezone text;
  v_lock_timeout text;
begin
  select * into v_entity from workflow.entities where id = p_entity_id;
  if not found or v_entity.is_active is false then
    return jsonb_build_object('status', 'inactive');
  end if;
  select * into v_view from workflow.view_entities where entity_id = p_entity_id for update skip locked;
  if not found then
    if exists (select 1 from workflow.view_entities where entity_id = p_entity_id) then
      return jsonb_build_object('status', 'busy');
    end if;
    return jsonb_build_object('status', 'inactive');
  end if;
  if not p_force and v_view.last_polled_at is not null and v_view.last_polled_at + v_view.poll_interval > now() then
    return jsonb_build_object('status', 'not_due');
  end if;
  select array_agg(distinct t.name) into v_operations
    from workflow.automation_rules r
    join workflow.trigger_types t on t.id = r.trigger_type_id
   where r.entity_id = p_entity_id and r.is_active and t.name in ('on_create', 'on_update', 'on_delete');
  if v_operations is null then
    -- Kept up to date, the snapshot would cost a full read per interval for nothing; dropped, the
    -- first rule written later starts from a fresh one, not from changes made before it existed.
    if v_view.snapshot_at is not null then
      delete from workflow.view_snapshots where entity_id = p_entity_id;
    end if;
    update workflow.view_entities set snapshot_at = null, last_polled_at = now(), last_error = null, last_error_at = null
     where entity_id = p_entity_id;
    return jsonb_build_object('status', 'idle');
  end if;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  v_first := v_view.snapshot_at is null;
  v_timezone := case when v_first then v_session_timezone else coalesce(v_view.snapshot_timezone, v_session_timezone) end;
  -- Local to the transaction (TimeZone has no SET clause here), and put back before returning.
  perform set_config('TimeZone', v_timezone, true);
  begin
    if v_relation is null then
      raise exception 'there is no view %.%', quote_ident(coalesce(v_entity.schema_name, 'public')), quote_ident(v_entity.name)
        using errcode = 'undefined_table';
    end if;
    -- Again at every poll: the view may have been replaced since it was registered. Locked first
    -- (LOCK on a view locks the relations it reads too, recursively): a CREATE OR REPLACE VIEW or
    -- CREATE POLICY committed between the check and the read would otherwise be what the read runs.
    -- A materialized view cannot be locked this way, and reading one does not run its query.
    if (select relkind from pg_class where oid = v_relation) = 'v' then
      v_reading := true; -- LOCK needs the SELECT privilege the read needs
      -- A view held by long DDL, or by a transaction its owner leaves open, would otherwise stall
      -- this daemon's poller (every view it polls after this one) and its shutdown for as long: wait
      -- at most 5 s, record it, try again at the next interval. A shorter lock_timeout is kept.
      -- An error undoes the setting with the block's subtransaction.
      v_lock_timeout := current_setting('lock_timeout');
      if v_lock_timeout::interval = interval '0' or v_lock_timeout::interval > interval '5 seconds' then
        perform set_config('lock_timeout', '5s', true);
      end if;
      execute format('lock table %s in access share mode', v_relation);
      perform set_config('lock_timeout', v_lock_timeout, true);
      v_reading := false;
    end if;
    perform workflow.check_view_safety(v_entity.name, v_relation);
    v_reading := true;
    -- cur is read once (a CTE referenced more than once is materialised). With a duplicate key
    -- every write below sees an empty diff, so the snapshot is left as it was.
    execute format($q$
      with cur as (
        select %s as row_key, pg_catalog.to_jsonb(v.*) as row from %s v
      ), dup as (
        select row_key from cur group by row_key having count(*) > 1 limit 1
      ), diff as (
        select coalesce(c.row_key, o.row_key) as row_key, o.row as old_row, c.row as new_row,
               case when o.row is null then 'on_create' when c.row is null then 'on_delete' else 'on_update' end as operation
          from cur c
          full join (select s.row_key, s.row from workflow.view_snapshots s where s.entity_id = $1) o
            on o.row_key = c.row_key
         where c.row is distinct from o.row
           and not exists (select from dup)
      ), events as (
        insert into workflow.events (entity_id, operation, row_key, old_row, new_row)
        select $1, d.operation, d.row_key, d.old_row, d.new_row
          from diff d
         where not $2 and d.operation = any ($3)
        returning 1
      ), deleted as (
        delete from workflow.view_snapshots s
         using diff d
         where s.entity_id = $1 and s.row_key = d.row_key and d.new_row is null
        returning 1
      ), written as (
        insert into workflow.view_snapshots (entity_id, row_key, row)
        select $1, d.row_key, d.new_row from diff d where d.new_row is not null
        on conflict (entity_id, row_key) do update set row = excluded.row
        returning 1
      )
      select (select row_key from dup) as duplicate_key,
             (select count(*) from cur) as rows,
             (select count(*) from diff where operation = 'on_create') as created,
             (select count(*) from diff where operation = 'on_update') as updated,
             (select count(*) from diff where operation = 'on_delete') as deleted,
             (select count(*) from events) as fired,
             (select count(*) from deleted) + (select count(*) from written) as snapshot_writes
    $q$, workflow.view_key_expr(v_view.key_columns), v_relation)
      into v_result
      using p_entity_id, v_first, v_operations;
  exception when others then
    get stacked diagnostics v_message = message_text, v_state = returned_sqlstate;
    if v_state = '55P03' then
      v_message := v_message || format(' (another session holds a lock on %s or a relation it reads; polled again at the next interval)',
                                       coalesce(v_relation::text, v_entity.name));
    end if;
    if v_state = '42501' and v_reading then
      v_message := v_message || format(' (the daemon reads the view as itself: grant select on %s to rulebook_daemon)',
                                       coalesce(v_relation::text, v_entity.name));
    end if;
    update workflow.view_entities set last_polled_at = now(), last_error = v_message, last_error_at = now()
     where entity_id = p_entity_id;
    perform set_config('TimeZone', v_session_timezone, true);
    return jsonb_build_object('status', 'error', 'message', v_message, 'sqlstate', v_state);
  end;
  perform set_config('TimeZone', v_session_timezone, true);
  if v_result.duplicate_key is not null then
    v_message := format('key column(s) %s do not identify the rows of %s: the key %s appears more than once',
                        array_to_string(v_view.key_columns, ', '), v_relation, v_result.duplicate_key);
    update workflow.view_entities set last_polled_at = now(), last_error = v_message, last_error_at = now()
     where entity_id = p_entity_id;
    return jsonb_build_object('status', 'duplicate_key', 'key', v_result.duplicate_key, 'message', v_message);
  end if;
  update workflow.view_entities
     set snapshot_at = now(), snapshot_timezone = v_timezone, last_polled_at = now(), last_error = null,
         last_error_at = null
   where entity_id = p_entity_id;
  if v_first then
    return jsonb_build_object('status', 'snapshot', 'rows', v_result.rows);
  end if;
  if v_result.fired > 0 then
    perform workflow.wake_daemons();
  end if;
  return jsonb_build_object('status', 'polled', 'rows', v_result.rows, 'created', v_result.created,
                            'updated', v_result.updated, 'deleted', v_result.deleted, 'fired', v_result.fired);
end
$$;

-- The views whose poll is due, soonest first; a daemon polls each in a transaction of its own.
create function workflow.due_view_polls() returns table (entity_id uuid, entity_name text)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select v.entity_id, format('%s.%s', coalesce(e.schema_name, 'public'), e.name)
    from workflow.view_entities v
    join workflow.entities e on e.id = v.entity_id
   where e.is_active is not false
     and (v.last_polled_at is null or v.last_polled_at + v.poll_interval <= now())
   order by v.last_polled_at nulls first
$$;

-- The landed check (000003) with one change: a view registered in workflow.view_entities may host
-- change rules; one that is not is refused with a message saying how to register it.
create or replace function workflow.check_automation_rule() returns trigger
language plpgsql as $$
declare
  v_entity workflow.entities;
  v_entity_type text;
  v_trigger_type text;
  v_relation regclass;
begin
  select * into v_entity from workflow.entities where id = new.entity_id;
  if not found then
    return new; -- the foreign key reports it
  end if;
  if v_entity.entity_type_id <> new.entity_type_id then
    raise exception 'automation rule "%": entity_type_id % does not match the entity_type_id % of entity "%"',
      new.name, new.entity_type_id, v_entity.entity_type_id, v_entity.name
      using errcode = 'check_violation',
            hint = 'Use the entity_type_id of the entity the rule watches.';
  end if;
  select name into v_entity_type from workflow.entity_types where id = v_entity.entity_type_id;
  select name into v_trigger_type from workflow.trigger_types where id = new.trigger_type_id;
  if v_entity_type = 'view' and v_trigger_type in ('on_create', 'on_update', 'on_delete')
     and not exists (select 1 from workflow.view_entities where entity_id = new.entity_id) then
    raise exception 'automation rule "%": entity "%" is a view without key_columns, so its changes cannot be seen; set its key columns to poll it, or use a scheduled rule',
      new.name, v_entity.name
      using errcode = 'invalid_parameter_value',
            hint = format('select workflow.register_view(%L, ''{<key column>}'', ''1 minute'') (docs/views.md).',
                          format('%I.%I', coalesce(v_entity.schema_name, 'public'), v_entity.name));
  end if;
  v_relation := workflow.entity_relation(v_entity.schema_name, v_entity.name);
  perform workflow.check_trigger_conditions(new.name, new.trigger_conditions, v_relation, v_trigger_type);
  return new;
end
$$;
