-- The outbox as a table Debezium can stream (issue 10, "Kafka through Debezium"; docs/kafka.md).
--
-- Debezium reads tables from the WAL, and workflow.outbox is a view, which never appears there.
-- So workflow.events itself is what a logical replication slot streams, through the publication
-- rulebook_outbox below, and the outbox event router maps its columns (docs/kafka.md):
--   id -> the event id (header "id"), row_key -> the Kafka key, aggregate_type -> the topic,
--   new_row -> the payload, operation, old_row, actor_id, depth, rule_id -> fields beside it.
-- The one thing the router needs that the table lacked is the topic, a string column: a table's
-- schema.table. The generated capture function writes it as a literal.
--
-- Chosen by measurement (bench/outbox-shape.ts; CPU time of the writing backend per captured
-- row, medians of 7 rounds, on a shared 2-core machine where rounds of one variant varied by 15-20%; the table
-- and method are in docs/kafka.md), against the alternatives:
--   capture function                          single-row UPDATE   100,000-row UPDATE
--   before this migration                     70.7 us             36.3 us
--   aggregate_type literal (this migration)   65.9 us (noise)     41.7 us (noise)
--   + a prepared payload column               89.2 us (+26%)      52.5 us (+44%)
--     (jsonb_build_object of old and new row, so that the router's payload holds both)
--   a second table in the router's default    135.5 us (+92%)     88.4 us (+143%)
--     shape, written beside workflow.events
-- The two alternatives convert and store every captured row twice.
--
-- Every other INSERT into workflow.events leaves aggregate_type null and a BEFORE INSERT trigger,
-- whose WHEN clause skips the capture's rows, fills it from workflow.entities: run_rule's manual
-- events (000005), the scheduler's ticks (000009's workflow.fire_scheduled_rule), view polls
-- (000017), and whatever a later migration or an operator inserts (the per-row events of a scheduled
-- rule, src/scheduler/row-tick.ts, name it themselves, once per batch). So no such INSERT has to know about Kafka, and no event
-- reaches the router without a topic.
--
-- The publication carries INSERTs only: the engine claims events by deleting them and marks
-- failures with UPDATEs, and neither means anything to a consumer (the router drops DELETEs and
-- warns about UPDATEs when they do reach it). Hence no REPLICA IDENTITY change either: only
-- published UPDATEs and DELETEs need one, and the primary key would serve if they were.

alter table workflow.events add column aggregate_type text;

comment on column workflow.events.aggregate_type is
  'schema.table of the event''s entity: the topic Debezium''s outbox event router routes the event to (docs/kafka.md).';

-- The same spelling as workflow.outbox's aggregatetype, so that the view and the column agree.
create function workflow.outbox_aggregate_type(p_schema_name text, p_name text) returns text
language sql immutable parallel safe
set search_path = pg_catalog, pg_temp
as $$
  select format('%s.%s', coalesce(p_schema_name, 'public'), p_name)
$$;

-- Runs as workflow's owner, since the roles that insert events (rulebook_capture among them) need
-- not read workflow.entities. Only for rows that come without aggregate_type: the capture's own
-- rows pay for the WHEN clause alone, about 0.7 us per row (20,000 INSERTs into workflow.events,
-- 20 rounds alternating with the trigger disabled: 12.3 against 11.7 us), 1-2% of a captured UPDATE.
-- An event whose entity is not registered gets 'unregistered', which has no dot and so is never
-- a table's schema.table: the router needs a topic for every row it reads (a null one stops the
-- connector), and refusing the INSERT would change what was accepted before this migration.
create function workflow.fill_event_aggregate_type() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  select workflow.outbox_aggregate_type(e.schema_name, e.name) into new.aggregate_type
    from workflow.entities e
   where e.id = new.entity_id;
  if new.aggregate_type is null then
    new.aggregate_type := 'unregistered';
    raise warning 'workflow.events: entity % is not registered in workflow.entities; the event''s aggregate_type (the topic it is streamed to) is ''unregistered''', new.entity_id
      using hint = 'Insert events only for registered tables (workflow.register_entity), or set aggregate_type yourself.';
  end if;
  return new;
end
$$;

create trigger fill_aggregate_type before insert on workflow.events
  for each row when (new.aggregate_type is null) execute function workflow.fill_event_aggregate_type();

-- Events waiting when this migration runs get theirs too (the publication below did not exist when
-- they were written, so they are never streamed; this keeps the column true for every row).
update workflow.events ev
   set aggregate_type = workflow.outbox_aggregate_type(e.schema_name, e.name)
  from workflow.entities e
 where e.id = ev.entity_id and ev.aggregate_type is null;

-- 000010's generator, writing aggregate_type as one more literal (%10$L); everything else as there.
-- The literal is the entity's registered schema_name.name, which the fill trigger above and
-- workflow.outbox use too, not the table's current name: the ALTER TABLE event trigger rewrites
-- this function after a RENAME without touching workflow.entities, and a literal from pg_class
-- would then send the table's captured events to a new topic and its run_rule and scheduled events
-- to the old one. The topic changes when the entity's name is changed (which installs the capture
-- again).
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

-- Every table's capture function again, to write aggregate_type. A table whose function cannot be
-- rewritten (for a reason write_capture_function gives) keeps its old one, whose rows the trigger
-- above fills: slower, never wrong.
do $$
declare
  v record;
  v_message text;
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
      raise warning 'rulebook: the capture function of % was not rewritten (%); its events get aggregate_type from workflow.entities instead',
        v.relation, v_message;
    end;
  end loop;
end
$$;

-- The publication Debezium reads (publication.name=rulebook_outbox, publication.autocreate.mode=
-- disabled). CREATE PUBLICATION needs CREATE on the database and ownership of workflow.events; an
-- installer without the first is told the statement to have the database owner run.
do $$
declare
  v_statement text := 'create publication rulebook_outbox for table workflow.events with (publish = ''insert'')';
begin
  if exists (select from pg_catalog.pg_publication where pubname = 'rulebook_outbox') then
    raise notice 'rulebook: publication rulebook_outbox exists already and is left as it is; docs/kafka.md says what it should publish';
  elsif (select rolsuper from pg_catalog.pg_roles where rolname = current_user)
        or has_database_privilege(current_database(), 'CREATE') then
    execute v_statement;
  else
    raise notice 'rulebook: % may not create publications in database %, so there is none for Debezium yet; have the database owner run: %',
      current_user, current_database(), v_statement;
  end if;
exception when insufficient_privilege then
  raise notice 'rulebook: % may not create the publication for Debezium (%); have the database owner run: %',
    current_user, sqlerrm, v_statement;
end
$$;
