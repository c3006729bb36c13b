-- Four things, each described where it is made: the alert stream registry (alert NOTIFYs only
-- while a stream listens), the action types daemons record (for `rules validate`), the re-check of
-- view registrations (for `rules validate`), and no vacuum truncation of the event queue.

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

-- Action types a daemon can run. A rule action names its type in a string, and a custom handler
-- (ActionRegistry.register in the library) exists only in the code of the daemon that runs it, so
-- the type of an action cannot be refused when written without refusing a rule written before
-- its daemon first started. Each daemon records here the types it runs when it starts (built-in
-- ones are here from the start), and `rules validate` reports an action whose type is in neither:
-- a misspelt type such as "create_alerts" is found before it fails at its first event.
create table workflow.action_types (
  action_type text primary key,
  built_in boolean not null default false,
  -- The daemon (workflow.daemons.id) that registered it last, and when; null for built-in ones.
  registered_by text,
  registered_at timestamptz not null default now()
);

comment on table workflow.action_types is
  'Action types that some daemon can run: the built-in ones, and those each daemon records when it starts.';

insert into workflow.action_types (action_type, built_in)
values ('allocate_inventory', true), ('create_alert', true), ('send_email', true),
       ('send_notification', true), ('update_field', true), ('webhook', true);

-- What is now wrong with each view registration (docs/views.md): the checks its trigger made when it
-- was written (check_view_entity), against the view as it is today. A view replaced since can have
-- lost a key column, stopped returning one row per key, or call a function a non-superuser owns.
-- The uniqueness check reads the whole view, as the caller. One row per view with a problem.
create function workflow.view_registration_problems()
returns table (entity_id uuid, entity_name text, problem text)
language plpgsql stable as $$
declare
  v record;
  v_relation regclass;
  v_missing text[];
  v_duplicate jsonb;
begin
  for v in
    select ve.entity_id, ve.key_columns, e.name, e.schema_name
      from workflow.view_entities ve join workflow.entities e on e.id = ve.entity_id
     order by e.name
  loop
    begin
      v_relation := workflow.entity_relation(v.schema_name, v.name);
      if v_relation is null or (select relkind from pg_catalog.pg_class where oid = v_relation) not in ('v', 'm') then
        raise exception 'workflow.view_entities "%": %.% is no longer a view', v.name, coalesce(v.schema_name, 'public'), v.name
          using errcode = 'wrong_object_type';
      end if;
      select array_agg(c order by o) into v_missing
        from unnest(v.key_columns) with ordinality as k (c, o)
       where not exists (select 1 from pg_catalog.pg_attribute a
                          where a.attrelid = v_relation and a.attname = c and a.attnum > 0 and not a.attisdropped);
      if v_missing is not null then
        raise exception 'workflow.view_entities "%": key column(s) % are not columns of %',
          v.name, array_to_string(v_missing, ', '), v_relation
          using errcode = 'undefined_column';
      end if;
      perform workflow.check_view_safety(v.name, v_relation);
      execute format('select row_key from (select %s as row_key from %s v) k group by row_key having count(*) > 1 limit 1',
                     workflow.view_key_expr(v.key_columns), v_relation)
        into v_duplicate;
      if v_duplicate is not null then
        raise exception 'workflow.view_entities "%": key column(s) % do not identify the rows of %: the key % appears more than once',
          v.name, array_to_string(v.key_columns, ', '), v_relation, v_duplicate
          using errcode = 'unique_violation';
      end if;
    exception when others then
      entity_id := v.entity_id; entity_name := v.name; problem := sqlerrm;
      return next;
    end;
  end loop;
end
$$;
