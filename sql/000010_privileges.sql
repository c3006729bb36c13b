-- The privilege model (docs/privileges.md). Four roles, each with what its job needs:
--   rulebook_admin          DBAs who register tables, write rules, actions and templates, retry events.
--   rulebook_daemon         the daemon's login role is a member; the only role whose writes may set
--                           rulebook.depth.
--   rulebook_capture        owns the generated capture functions, which run the owner's type code
--                           (casts to json, output functions) through to_jsonb: it may only insert
--                           into workflow.events and read workflow.idle_daemons.
--   rulebook_outbox_reader  reads the outbox, nothing else.
-- Application writers need no privilege on workflow: the capture filters are executable by PUBLIC
-- (a trigger's WHEN functions are checked for EXECUTE as the writer at run time; they only compare
-- the row with itself), and a trigger function is not checked for EXECUTE when it fires.

do $$
declare
  v_role text;
  v_missing text[] := '{}';
  v_pg16 boolean;
  v_member boolean;
begin
  foreach v_role in array array['rulebook_admin', 'rulebook_daemon', 'rulebook_capture', 'rulebook_outbox_reader'] loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = v_role) then
      v_missing := v_missing || v_role;
    end if;
  end loop;
  if cardinality(v_missing) > 0 then
    if not (select rolsuper or rolcreaterole from pg_catalog.pg_roles where rolname = current_user) then
      raise exception 'rulebook migration 000010: roles % do not exist, and % may not create roles', v_missing, current_user
        using errcode = 'insufficient_privilege',
              hint = format('Have a role with CREATEROLE run: %s; grant rulebook_capture to %I; then migrate again.',
                            (select string_agg(format('create role %I nologin', r), '; ') from unnest(v_missing) r),
                            current_user);
    end if;
    foreach v_role in array v_missing loop
      execute format('create role %I nologin', v_role);
    end loop;
  end if;
  -- Changing a function's owner to rulebook_capture needs membership in it unless one is a
  -- superuser. The membership gives the installing role nothing it did not have: it owns workflow.
  -- A non-superuser that installs rulebook is most often also the role `rulebook start` runs as
  -- (one DATABASE_URL for both): it owns workflow already, so making it a member of the daemon and
  -- admin roles gives it nothing new, and the daemon's own writes then carry their chain depth.
  -- Where it may not grant them, it is told so when the daemon starts (src/engine/daemon-role.ts).
  -- From PostgreSQL 16 on, a role with CREATEROLE that creates a role gets only ADMIN on it:
  -- pg_has_role(.., 'MEMBER') is then true, but ALTER ... OWNER TO needs SET and using the role's
  -- grants needs INHERIT, so there the test is SET and the grant names both (through EXECUTE:
  -- PostgreSQL 15 does not parse WITH SET). The branch is tested by hand only: CI runs PostgreSQL 15.
  if not (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    v_pg16 := current_setting('server_version_num')::int >= 160000;
    foreach v_role in array array['rulebook_capture', 'rulebook_daemon', 'rulebook_admin'] loop
      if v_pg16 then
        execute 'select pg_catalog.pg_has_role(current_user, $1, ''SET'') and pg_catalog.pg_has_role(current_user, $1, ''USAGE'')'
          into v_member using v_role;
      else
        v_member := pg_catalog.pg_has_role(current_user, v_role, 'MEMBER');
      end if;
      continue when v_member;
      begin
        if v_pg16 then
          execute format('grant %I to %I with set true, inherit true', v_role, current_user);
        else
          execute format('grant %I to %I', v_role, current_user);
        end if;
      exception when insufficient_privilege then
        if v_role = 'rulebook_capture' then
          raise exception 'rulebook migration 000010: % must be a member of rulebook_capture to give it the capture functions', current_user
            using errcode = 'insufficient_privilege',
                  hint = format('Have a role with CREATEROLE run: grant rulebook_capture to %I; then migrate again.', current_user);
        end if;
        raise notice 'rulebook: % may not join %; grant it to the role the daemon runs as (docs/privileges.md)', current_user, v_role;
      end;
    end loop;
  end if;
end
$$;

-- rulebook_capture: exactly what a capture function does, nothing more.
grant usage on schema workflow to rulebook_capture;
grant insert on workflow.events to rulebook_capture;
grant select on workflow.idle_daemons to rulebook_capture;

-- The types of a table's columns, followed into arrays, domains, composites and ranges, whose casts
-- to json, jsonb or text or whose output function belong to a role that is not a superuser. to_jsonb
-- in a capture function calls such code as rulebook_capture (and a superuser-owned function is code
-- a superuser has vouched for). Casts to text are not used by to_jsonb today; they are listed
-- because a conversion to text is the next thing anyone would reach for.
create function workflow.capture_hazards(p_relation regclass)
returns table (column_name name, column_type regtype, hazard_type regtype, hazard text, function_name regprocedure,
               function_owner name)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  with recursive reached (column_name, column_type, type_oid, depth) as (
    select a.attname, a.atttypid::regtype, a.atttypid, 0
      from pg_attribute a
     where a.attrelid = p_relation and a.attnum > 0 and not a.attisdropped
    union all
    select r.column_name, r.column_type, inner_type.oid, r.depth + 1
      from reached r
      join pg_type t on t.oid = r.type_oid
     cross join lateral (
       select t.typbasetype where t.typtype = 'd'
       union all
       select t.typelem where t.typelem <> 0
       union all
       select a.atttypid from pg_attribute a
        where t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped
       union all
       select rg.rngsubtype from pg_range rg where t.typtype = 'r' and rg.rngtypid = t.oid
       union all
       select rg.rngsubtype from pg_range rg where t.typtype = 'm' and rg.rngmultitypid = t.oid
     ) inner_type (oid)
     -- Types cannot contain themselves; the bound only keeps a damaged catalog from looping.
     where r.depth < 32
  )
  select distinct r.column_name, r.column_type, c.castsource::regtype, 'cast to ' || format_type(c.casttarget, null),
         c.castfunc::regprocedure, o.rolname
    from reached r
    join pg_cast c on c.castsource = r.type_oid and c.castfunc <> 0
                  and c.casttarget in ('json'::regtype, 'jsonb'::regtype, 'text'::regtype)
    join pg_proc p on p.oid = c.castfunc
    join pg_roles o on o.oid = p.proowner
   where not o.rolsuper
  union
  select r.column_name, r.column_type, t.oid::regtype, 'output function', t.typoutput::regprocedure, o.rolname
    from reached r
    join pg_type t on t.oid = r.type_oid
    join pg_proc p on p.oid = t.typoutput
    join pg_roles o on o.oid = p.proowner
   where not o.rolsuper
$$;

-- Refuses a table whose capture would run code of a role that is not a superuser (see
-- capture_hazards): such code would run as rulebook_capture, which may write workflow.events.
create function workflow.check_capture_safety(p_entity_name text, p_relation regclass) returns void
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
  v_type text;
begin
  select * into v from workflow.capture_hazards(p_relation) order by 1, 3 limit 1;
  if found then
    v_type := case when v.hazard_type = v.column_type then v.column_type::text
                   else format('%s (containing %s)', v.column_type, v.hazard_type) end;
    raise exception 'workflow.entities "%": column % of % has type %, whose % is %, owned by %, which is not a superuser; capture would run it as rulebook_capture',
      p_entity_name, quote_ident(v.column_name), p_relation, v_type, v.hazard, v.function_name, quote_ident(v.function_owner)
      using errcode = 'insufficient_privilege',
            hint = format('Drop that %s, or have a superuser review %s and take it over (alter function %s owner to a superuser); see docs/privileges.md.',
                          v.hazard, v.function_name, v.function_name);
  end if;
end
$$;

-- The capture function, now owned by rulebook_capture (see 000004_capture.sql for why it looks as it
-- does; the cost notes there hold). Two additions, both cheap:
-- - It refuses to run for any table but its own, so that a role that may create a trigger cannot
--   forge another table's events with it. The table's OID is compared first (one comparison). Only
--   when it differs is the catalog read: a partition of the table (a row trigger on a partitioned
--   table fires as a clone on the partition that holds the row) is accepted by its partition root,
--   and, as a dump and restore changes OIDs, a table with the schema and name written in is too. A
--   renamed table gets its function rewritten by the ALTER TABLE event trigger.
-- What this migration costs a captured write, measured with CPU time of one session running 15,000
-- single-row statements in a plpgsql loop, alternating with a database at 000009, 10 to 12 rounds
-- (on a loaded 2-core machine, so medians): about 2 us more per captured row (insert 20 -> 22 us,
-- update 29 -> 32 us), all of it from running as rulebook_capture rather than a superuser (the
-- privilege check on workflow.events that a superuser skips; owned by a superuser, the new function
-- measured as the old one). Writes no rule watches: no difference. Per committed single-row
-- transaction that is well under 1%.
-- - rulebook.depth is taken only from members of rulebook_daemon (the daemon, and superusers),
--   as a number from 0 up; anything else counts as 0, so that a writer can neither switch rules off
--   for its write nor let a rule loop, and a malformed value never fails a write. pg_has_role runs
--   only when the setting holds a number, which an application's own write never does.
-- The table's schema and name are chosen by its owner, who may rename it to anything, and the
-- rename makes the event trigger rewrite this function as workflow's owner. So they reach the
-- generated code only as quoted literals inside a body that is itself passed as one literal
-- (format's %L), never spliced into dollar quotes, which a name containing the delimiter would end.
-- check_function_bodies is on so that generated code is always parsed when it is created.
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
    insert into workflow.events (entity_id, operation, row_key, old_row, new_row, actor_id, depth)
    values (%6$L, 'on_update', %7$s, pg_catalog.to_jsonb(old), pg_catalog.to_jsonb(new), %9$s);
  elsif tg_op operator(pg_catalog.=) 'INSERT' then
    insert into workflow.events (entity_id, operation, row_key, new_row, actor_id, depth)
    values (%6$L, 'on_create', %7$s, pg_catalog.to_jsonb(new), %9$s);
  else
    insert into workflow.events (entity_id, operation, row_key, old_row, actor_id, depth)
    values (%6$L, 'on_delete', %8$s, pg_catalog.to_jsonb(old), %9$s);
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
$t$,
    p_relation::oid, v_table, v_schema, v_name, format('%I.%I', v_schema, v_table),
    p_entity_id, v_new_key, v_old_key, v_values);
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

-- The capture filters take their rows as record, not as the table's row type: a function with the
-- row type as argument depends on the table, and DROP TABLE of a registered table failed ("other
-- objects depend on it") in the application's own migrations. The body is 000004's otherwise.
-- Measured with bench/capture.ts: no difference a single-row or bulk write can see (the row is
-- passed as a datum either way; plpgsql resolves the fields once per session and row type).
create or replace function workflow.refresh_capture(p_entity_id uuid) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set check_function_bodies = on
as $$
declare
  v_entity workflow.entities;
  v_relation regclass;
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

  execute format('create or replace function workflow.%I(n record) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'insert'),
                 format('begin return %s; end', v_insert));
  execute format('create or replace function workflow.%I(o record) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'delete'),
                 format('begin return %s; end', v_delete));
  execute format('create or replace function workflow.%I(o record, n record) returns boolean language plpgsql as %L',
                 workflow.capture_filter_name(p_entity_id, 'update'),
                 format('begin return %s; end', v_update));
end
$$;

-- Unregistering a table works for whoever could register it (see the exception below); 000004's
-- function otherwise.
create or replace function workflow.remove_capture(p_entity_id uuid, p_schema_name text, p_name text) returns void
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
    exception when insufficient_privilege then
      -- DROP TRIGGER needs the table's owner, CREATE TRIGGER only the TRIGGER privilege, with
      -- which rulebook_admin registered the table. The triggers depend on the capture functions,
      -- so drop_capture_filters (run as workflow's owner) drops them with its CASCADE.
      null;
    when lock_not_available then
      raise exception 'workflow.entities "%": % is busy; could not take the lock to remove capture triggers within lock_timeout',
        p_name, v_relation
        using errcode = 'lock_not_available',
              hint = 'Long transactions hold the table. Retry the statement; nothing was changed.';
    end;
  end if;
  perform workflow.drop_capture_filters(p_entity_id);
end
$$;

-- Switching an entity back on runs the same check as registering it: capture was switched off
-- (below) because its table came to hold a type that is unsafe to capture.
create function workflow.check_entity_capture_safety() returns trigger
language plpgsql as $$
declare
  v_relation regclass;
begin
  if new.is_active is not false and old.is_active is false then
    v_relation := workflow.entity_relation(new.schema_name, new.name);
    if v_relation is not null and (select relkind from pg_catalog.pg_class where oid = v_relation) in ('r', 'p') then
      -- write_capture_function checks the table again. The triggers are put back only when
      -- missing (the upgrade to this migration removes them from tables unsafe to capture): that
      -- takes a lock on the table and the TRIGGER privilege, which switching on otherwise does not.
      if exists (select 1 from pg_catalog.pg_trigger where tgrelid = v_relation and tgname = 'rulebook_capture_insert') then
        perform workflow.write_capture_function(new.id, v_relation);
      else
        perform workflow.install_capture(new.id);
      end if;
    end if;
  end if;
  return new;
end
$$;

create trigger check_entity_capture_safety before update on workflow.entities
  for each row execute function workflow.check_entity_capture_safety();

-- Rewrites an entity's capture after DDL on its table or on types: the capture function (the table
-- may have been renamed), the filters (columns may have changed), and the safety check (a column or
-- cast may have been added). It never fails the DDL, which is the host application's: a table
-- that became unsafe to capture gets its capture switched off (is_active = false) with a warning,
-- and any other failure leaves capture as it was, with a warning.
create function workflow.recapture_after_ddl(p_entity_id uuid, p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_name text;
  v_message text;
begin
  select name into v_name from workflow.entities where id = p_entity_id;
  begin
    perform workflow.check_capture_safety(v_name, p_relation);
  exception when insufficient_privilege then
    get stacked diagnostics v_message = message_text;
    update workflow.entities set is_active = false where id = p_entity_id and is_active is not false;
    raise warning 'rulebook: % Capture of % is switched off (workflow.entities.is_active = false) until that is fixed.',
      v_message, p_relation;
    return;
  end;
  begin
    perform workflow.write_capture_function(p_entity_id, p_relation);
    perform workflow.refresh_capture(p_entity_id);
  exception when others then
    get stacked diagnostics v_message = message_text;
    raise warning 'rulebook: capture of % could not be refreshed after this DDL: %', p_relation, v_message
      using hint = format('Run select workflow.refresh_capture(%L) once the table is fixed.', p_entity_id);
  end;
end
$$;

-- Every captured table, checked again for code a capture would run (capture_hazards). Clones of
-- a partitioned table's trigger on its partitions (tgparentid <> 0) are left out: the partitioned
-- table is the one registered, and its capture covers them.
create function workflow.check_all_captures() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
begin
  for v in
    select t.tgrelid as relation, e.id as entity_id
      from pg_trigger t
      join pg_proc p on p.oid = t.tgfoid
      join workflow.entities e on workflow.capture_function_name(e.id) = p.proname
     where t.tgname = 'rulebook_capture_insert' and t.tgparentid = 0 and e.is_active is not false
  loop
    if exists (select 1 from workflow.capture_hazards(v.relation::regclass)) then
      perform workflow.recapture_after_ddl(v.entity_id, v.relation::regclass);
    end if;
  end loop;
end
$$;

-- The event trigger runs for every ALTER TABLE in the database, as whoever issues it. A table
-- without rulebook's capture trigger returns after a few catalog lookups by index, without reading
-- workflow, which the issuer usually may not. A registered table is refreshed by the SECURITY
-- DEFINER functions above. The entity is found from the capture function the trigger calls, so a
-- renamed table is still found.
-- - A partition is refreshed as its partitioned table (pg_partition_root): its triggers are clones
--   (tgparentid <> 0) that call the partitioned table's capture function, which must stay bound to
--   the partitioned table.
-- - A table's row type can be a column type (or inside one) of a registered table, and then a
--   column added to it is a column capture converts to JSON. Such a table is found by a
--   dependency on its row type or the row type's array type (pg_depend's index on the referenced
--   object); then every registered table is checked again, as after CREATE CAST.
create or replace function workflow.refresh_capture_after_ddl() returns event_trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v record;
begin
  for v in
    select distinct r.relation, e.id as entity_id
      from pg_event_trigger_ddl_commands() c
     cross join lateral (select c.objid union select pg_partition_root(c.objid::regclass)::oid) r (relation)
      join pg_trigger t on t.tgrelid = r.relation and t.tgname = 'rulebook_capture_insert' and t.tgparentid = 0
      join pg_proc p on p.oid = t.tgfoid
      join workflow.entities e on workflow.capture_function_name(e.id) = p.proname
     where c.classid = 'pg_class'::regclass
  loop
    perform workflow.recapture_after_ddl(v.entity_id, v.relation::regclass);
  end loop;
  if exists (
    select 1
      from pg_event_trigger_ddl_commands() c
      join pg_class r on r.oid = c.objid
      join pg_type rt on rt.oid = r.reltype
      join pg_depend d on d.refclassid = 'pg_type'::regclass and d.refobjid in (rt.oid, rt.typarray)
                      and d.deptype = 'n'
     where c.classid = 'pg_class'::regclass
  ) then
    perform workflow.check_all_captures();
  end if;
end
$$;

-- A cast or a composite type's new attribute can make an already registered table unsafe to
-- capture. CREATE CAST and ALTER TYPE are rare, so every captured table is checked again.
create function workflow.check_capture_after_type_ddl() returns event_trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform workflow.check_all_captures();
end
$$;

do $$
begin
  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    create event trigger rulebook_check_capture_types on ddl_command_end
      when tag in ('CREATE CAST', 'ALTER TYPE')
      execute function workflow.check_capture_after_type_ddl();
  end if;
end
$$;

-- Grants by role, in the manner of PgQ's newgrants files, computed from the catalog so that
-- functions added by later migrations are covered too: src/db/migrate.ts runs this after every
-- migration. EXECUTE is revoked from PUBLIC on every function in workflow except the capture
-- filters (see the top of this file). Not done with ALTER DEFAULT PRIVILEGES ... REVOKE EXECUTE
-- FROM PUBLIC: that can only be set for all schemas at once, and would change what every function
-- the installing role creates in this database (the host application's too) lets PUBLIC do. The
-- generated capture functions revoke their own EXECUTE (write_capture_function).
create function workflow.apply_privileges() returns void
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

-- Tables registered before this migration get the new capture: filters taking records, the
-- capture function owned by rulebook_capture, the triggers pointed at both. A table that is unsafe
-- to capture (capture_hazards) has its capture removed and switched off, with a warning, rather
-- than failing the upgrade; switching it on again installs it after the check. Any other failure
-- (a lock not taken, a privilege missing) fails the migration, which then changes nothing: capture
-- is never switched off for a reason that is not the table's. The drops and CREATE TRIGGERs take
-- exclusive locks on the application's tables, so they wait at most lock_timeout each.
do $$
declare
  v record;
  v_lock_timeout text := current_setting('lock_timeout');
begin
  perform set_config('lock_timeout', '5s', true);
  for v in
    select e.id, e.schema_name, e.name, workflow.entity_relation(e.schema_name, e.name) as relation
      from workflow.entities e
      join workflow.entity_types t on t.id = e.entity_type_id
     where t.name = 'table'
  loop
    begin
      if v.relation is null then
        perform workflow.drop_capture_filters(v.id);
        continue;
      end if;
      -- The old filters first (with the triggers that use them): while they exist, the triggers'
      -- WHEN clauses would resolve to them rather than to the new ones taking records.
      perform workflow.drop_capture_filters(v.id);
      if exists (select 1 from workflow.capture_hazards(v.relation)) then
        perform workflow.remove_capture(v.id, v.schema_name, v.name);
        update workflow.entities set is_active = false where id = v.id;
        raise warning 'rulebook: capture of % would run code of a role that is not a superuser (select * from workflow.capture_hazards(%) names it). Capture of % is removed and switched off (workflow.entities.is_active = false); fix that and set is_active = true to install it again.',
          v.relation, quote_literal(v.relation::text), v.relation;
      elsif (select relispartition from pg_catalog.pg_class where oid = v.relation) then
        -- Capture of a partition on its own is refused from now on (write_capture_function).
        perform workflow.remove_capture(v.id, v.schema_name, v.name);
        update workflow.entities set is_active = false where id = v.id;
        raise warning 'rulebook: % is a partition; its capture is removed and switched off (workflow.entities.is_active = false). Register its partitioned table instead.',
          v.relation;
      else
        perform workflow.install_capture(v.id);
      end if;
    exception when lock_not_available then
      raise exception 'rulebook migration 000010: % is busy; its lock was not granted within lock_timeout (%), and the migration changed nothing',
        v.relation, current_setting('lock_timeout')
        using errcode = 'lock_not_available',
              hint = 'Long transactions hold the table. Run the migration again when they are done.';
    end;
  end loop;
  -- The filters of 000004, now replaced, took the table's row type.
  for v in
    select p.oid::regprocedure as fn
      from pg_catalog.pg_proc p
     where p.pronamespace = 'workflow'::regnamespace
       and p.proname ~ '^capture_filter_[0-9a-f]{32}_(insert|update|delete)$'
       and p.proargtypes[0] <> 'record'::regtype
  loop
    execute format('drop function %s', v.fn);
  end loop;
  perform set_config('lock_timeout', v_lock_timeout, true);
end
$$;

select workflow.apply_privileges();
