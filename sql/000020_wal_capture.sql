-- WAL capture (issue 11, "Beyond triggers"; docs/capture-wal.md): RULEBOOK_CAPTURE=wal.
--
-- One daemon reads the logical replication slot rulebook_capture (plugin pgoutput, publication
-- rulebook_capture) and appends the changes that active rules watch to workflow.events through
-- workflow.append_wal_changes below. Everything after the outbox is unchanged.
--
-- How the trigger path is turned off: the capture triggers are DISABLEd on every registered table
-- (ALTER TABLE ... DISABLE TRIGGER), rather than read a setting in every captured row: a disabled
-- trigger costs the writer nothing, not even its WHEN clause, and the generated capture and filter
-- functions stay as they are (the reader calls the same filters, so relevance is decided by one
-- piece of code in both modes). Registering, renaming, deactivating and deleting an entity keep
-- working: the triggers below follow workflow.entities in WAL mode.
--
-- Publication: one listing the registered tables (kept in sync here), not FOR ALL TABLES. FOR ALL
-- TABLES needs a superuser, and would send the reader every row of every table, workflow.events'
-- own inserts among them, for the reader to throw away. TRUNCATE is not published: triggers do
-- not capture it either.

create table workflow.capture_settings (
  singleton boolean primary key default true check (singleton),
  -- 'triggers' or 'wal'; written by the daemon at start (RULEBOOK_CAPTURE).
  mode text not null default 'triggers' check (mode in ('triggers', 'wal')),
  -- The replication slot WAL mode reads (slots belong to the cluster, so each database has its
  -- own); kept after leaving WAL mode until the slot is dropped.
  slot_name text,
  changed_at timestamptz not null default now()
);
insert into workflow.capture_settings default values;

comment on table workflow.capture_settings is
  'How changes are captured: by row triggers or from the WAL (RULEBOOK_CAPTURE; docs/capture-wal.md).';

-- How far a slot's changes have been appended to workflow.events, written in the same transaction
-- as the events: a change is identified by its transaction's commit LSN and its position in that
-- transaction, and a change at or before this point is never appended again, whatever the slot
-- sends again after a crash between the commit and the confirmation.
create table workflow.wal_capture_progress (
  slot_name text primary key,
  commit_lsn pg_lsn not null,
  -- Changes of that transaction appended so far (a large transaction is appended in chunks).
  seq integer not null,
  updated_at timestamptz not null default now()
);

-- The replica identity a table had before WAL mode set it to FULL, restored when it leaves.
create table workflow.wal_capture_tables (
  relation_id oid primary key,
  previous_identity "char" not null
);

create function workflow.wal_capture_publication() returns text
language sql immutable as $$ select 'rulebook_capture' $$;

-- Puts one table under WAL capture: the old row of every UPDATE and DELETE in the WAL (REPLICA
-- IDENTITY FULL), its capture triggers disabled, the table in the publication. Idempotent.
-- SECURITY DEFINER: ALTER TABLE and ALTER PUBLICATION need the table's owner, while rulebook_admin
-- registers tables with the TRIGGER privilege alone; it acts only on registered tables.
create function workflow.wal_capture_table(p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '3s'
as $$
declare
  v_trigger name;
  v_identity "char";
  v_kind "char";
  v_partition regclass;
begin
  select relreplident, relkind into v_identity, v_kind from pg_class where oid = p_relation;
  if v_kind not in ('r', 'p') then
    return;
  end if;
  insert into workflow.wal_capture_tables (relation_id, previous_identity)
  values (p_relation, v_identity) on conflict do nothing;
  for v_partition in
    select p_relation union select relid from pg_partition_tree(p_relation) where isleaf
  loop
    if (select relreplident from pg_class where oid = v_partition) <> 'f' then
      execute format('alter table %s replica identity full', v_partition);
    end if;
  end loop;
  for v_trigger in
    select tgname from pg_trigger
     where tgrelid = p_relation and tgname like 'rulebook\_capture\_%' and not tgisinternal and tgenabled <> 'D'
  loop
    execute format('alter table %s disable trigger %I', p_relation, v_trigger);
  end loop;
  if not exists (select from pg_publication_tables
                  where pubname = workflow.wal_capture_publication()
                    and format('%I.%I', schemaname, tablename)::regclass = p_relation) then
    execute format('alter publication %I add table %s', workflow.wal_capture_publication(), p_relation);
  end if;
exception when lock_not_available then
  raise exception 'rulebook: % is busy; could not take the lock to switch it to WAL capture within lock_timeout', p_relation
    using errcode = 'lock_not_available',
          hint = 'Long transactions hold the table. Retry; nothing was changed.';
end
$$;

-- Gives a table back to trigger capture: the triggers enabled, its replica identity as before, out
-- of the publication. Idempotent.
create function workflow.trigger_capture_table(p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '3s'
as $$
declare
  v_trigger name;
  v_previous "char";
  v_partition regclass;
begin
  for v_trigger in
    select tgname from pg_trigger
     where tgrelid = p_relation and tgname like 'rulebook\_capture\_%' and not tgisinternal and tgenabled = 'D'
  loop
    execute format('alter table %s enable trigger %I', p_relation, v_trigger);
  end loop;
  delete from workflow.wal_capture_tables where relation_id = p_relation returning previous_identity into v_previous;
  if v_previous is not null and v_previous <> 'f' then
    for v_partition in
    select p_relation union select relid from pg_partition_tree(p_relation) where isleaf
  loop
      -- Only 'd' (default) and 'n' (nothing) can be restored by name; an index identity stays FULL.
      if v_previous = 'd' then
        execute format('alter table %s replica identity default', v_partition);
      elsif v_previous = 'n' then
        execute format('alter table %s replica identity nothing', v_partition);
      end if;
    end loop;
  end if;
  if exists (select from pg_publication_tables
              where pubname = workflow.wal_capture_publication()
                and format('%I.%I', schemaname, tablename)::regclass = p_relation) then
    execute format('alter publication %I drop table %s', workflow.wal_capture_publication(), p_relation);
  end if;
exception when lock_not_available then
  raise exception 'rulebook: % is busy; could not take the lock to switch it back to trigger capture within lock_timeout', p_relation
    using errcode = 'lock_not_available',
          hint = 'Long transactions hold the table. Retry; nothing was changed.';
end
$$;

-- Switches every registered table to p_mode and records it. Returns the WAL insert position after
-- the switch: a transaction that commits after it wrote with the triggers disabled (DISABLE
-- TRIGGER waits for the table's writers, so whatever committed before had its triggers fire). The
-- daemon records it as the reader's starting point, so a change is captured by one path only.
create function workflow.set_capture_mode(p_mode text, p_slot_name text) returns pg_lsn
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_relation regclass;
begin
  if p_mode not in ('triggers', 'wal') then
    raise exception 'set_capture_mode: mode must be ''triggers'' or ''wal'', got %', p_mode
      using errcode = 'invalid_parameter_value';
  end if;
  -- One switch at a time; registrations read the mode under the same row lock.
  perform 1 from workflow.capture_settings for update;
  if p_mode = 'wal' and not exists (select from pg_publication where pubname = workflow.wal_capture_publication()) then
    execute format('create publication %I with (publish = ''insert, update, delete'', publish_via_partition_root = true)',
                   workflow.wal_capture_publication());
  end if;
  for v_relation in
    select workflow.entity_relation(e.schema_name, e.name)
      from workflow.entities e
      join workflow.entity_types t on t.id = e.entity_type_id
     where t.name <> 'view'
  loop
    continue when v_relation is null;
    if p_mode = 'wal' then
      perform workflow.wal_capture_table(v_relation);
    else
      perform workflow.trigger_capture_table(v_relation);
    end if;
  end loop;
  if p_mode = 'triggers' then
    -- Tables deleted from workflow.entities while in WAL mode.
    for v_relation in select relation_id::regclass from workflow.wal_capture_tables
                       where exists (select from pg_class where oid = relation_id) loop
      perform workflow.trigger_capture_table(v_relation);
    end loop;
    delete from workflow.wal_capture_tables;
    if exists (select from pg_publication where pubname = workflow.wal_capture_publication()) then
      execute format('drop publication %I', workflow.wal_capture_publication());
    end if;
  end if;
  update workflow.capture_settings
     set mode = p_mode, slot_name = coalesce(p_slot_name, slot_name),
         changed_at = case when mode = p_mode then changed_at else now() end;
  return pg_current_wal_insert_lsn();
end
$$;

-- Keeps registrations in WAL mode: runs after entities_capture (triggers fire by name), which
-- (re)creates a table's capture triggers enabled.
create function workflow.entities_wal_capture() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_old regclass;
  v_new regclass;
begin
  if (select mode from workflow.capture_settings for share) <> 'wal' then
    return null;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then
    v_old := workflow.entity_relation(old.schema_name, old.name);
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    v_new := workflow.entity_relation(new.schema_name, new.name);
  end if;
  if v_old is not null and v_old is distinct from v_new then
    perform workflow.trigger_capture_table(v_old);
  end if;
  if v_new is not null and (select name from workflow.entity_types where id = new.entity_type_id) <> 'view' then
    perform workflow.wal_capture_table(v_new);
  end if;
  return null;
end
$$;

create trigger entities_wal_capture after insert or update or delete on workflow.entities
  for each row execute function workflow.entities_wal_capture();

-- The JSON row PostgreSQL's to_jsonb would give for a row of p_relation whose columns come as text
-- (pgoutput sends each column's text output): each value is cast back to its column's type, so
-- numbers, booleans and json columns come out as the capture trigger writes them. The expression
-- reads the object named by p_source. jsonb_build_object takes at most 100 arguments, hence the
-- chunks of 50 columns.
create function workflow.wal_row_expression(p_relation regclass, p_source text) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select coalesce(string_agg(chunk, ' || '), '''{}''::jsonb')
    from (select 'jsonb_build_object(' || string_agg(format('%L, (%s ->> %L)::%s', attname, p_source, attname,
                                                            format_type(atttypid, atttypmod)), ', ' order by attnum) || ')' as chunk
            from (select attname, atttypid, atttypmod, attnum, (row_number() over (order by attnum) - 1) / 50 as part
                    from pg_attribute
                   where attrelid = p_relation and attnum > 0 and not attisdropped) a
           group by part order by part) c
$$;

-- Appends a batch of decoded changes, in stream order, to workflow.events; returns how many events
-- were written. Each element of p_changes: l (commit LSN), s (position in the transaction), x
-- (xid), t (commit time), r (relation oid), o ('I', 'U' or 'D'), n and d (new and old row, column
-- -> text), p and a (the chain depth and actor the transaction declared in a logical decoding
-- message, src/capture/wal/wal-context.ts; the WAL holds no session settings). Changes at or before the slot's progress are skipped, the rest filtered by the entity's
-- generated capture filters (the same functions as the triggers' WHEN clauses) and appended, and
-- the progress moves to the last change, all in the caller's transaction.
create function workflow.append_wal_changes(p_slot text, p_changes jsonb) returns integer
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
  v_progress workflow.wal_capture_progress;
  v_last jsonb := p_changes -> -1;
  v_entity record;
  v_key_new text;
  v_key_old text;
  v_count integer := 0;
  v_rows integer;
  v_full bigint := pg_current_xact_id()::text::bigint;
begin
  if v_last is null then
    return 0;
  end if;
  select * into v_progress from workflow.wal_capture_progress where slot_name = p_slot for update;
  for v_entity in
    select e.id, rel.relation,
           workflow.outbox_aggregate_type(e.schema_name, e.name) as aggregate_type,
           format('%I.%I', n.nspname, c.relname) as rowtype
      from (select distinct (ch ->> 'r')::oid as relation from jsonb_array_elements(p_changes) ch) rel
      join workflow.entities e on workflow.entity_relation(e.schema_name, e.name) = rel.relation
      join pg_class c on c.oid = rel.relation
      join pg_namespace n on n.oid = c.relnamespace
  loop
    select 'jsonb_build_object(' || string_agg(format('%L, r.new_row -> %L', a.attname, a.attname), ', ' order by k.ord) || ')',
           'jsonb_build_object(' || string_agg(format('%L, r.old_row -> %L', a.attname, a.attname), ', ' order by k.ord) || ')'
      into v_key_new, v_key_old
      from pg_index i
     cross join lateral unnest(i.indkey) with ordinality as k (attnum, ord)
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = v_entity.relation and i.indisprimary;
    continue when v_key_new is null;
    execute format($q$
      insert into workflow.events (entity_id, aggregate_type, operation, row_key, old_row, new_row, txid, created_at,
                                   depth, actor_id)
      select %1$L, %2$L, r.operation,
             case r.operation when 'on_delete' then %3$s else %4$s end,
             r.old_row, r.new_row, r.txid, r.created_at, r.depth, r.actor_id
        from (select ch.ord,
                     case ch.v ->> 'o' when 'I' then 'on_create' when 'U' then 'on_update' else 'on_delete' end as operation,
                     case when ch.v ->> 'o' in ('U', 'D') then (select %5$s from (select ch.v -> 'd' as d) s) end as old_row,
                     case when ch.v ->> 'o' in ('I', 'U') then (select %6$s from (select ch.v -> 'n' as n) s) end as new_row,
                     ((((%7$s::bigint >> 32) - case when (ch.v ->> 'x')::bigint > (%7$s::bigint & 4294967295) then 1 else 0 end) << 32)
                      | (ch.v ->> 'x')::bigint)::text::xid8 as txid,
                     (ch.v ->> 't')::timestamptz as created_at,
                     coalesce((ch.v ->> 'p')::int, 0) as depth,
                     nullif(ch.v ->> 'a', '') as actor_id
                from jsonb_array_elements($1) with ordinality as ch (v, ord)
               where (ch.v ->> 'r')::oid = %8$s
                 and ($2::pg_lsn is null
                      or (ch.v ->> 'l')::pg_lsn > $2
                      or ((ch.v ->> 'l')::pg_lsn = $2 and (ch.v ->> 's')::int > $3))
              -- Keeps the subquery from being pulled up, which would build each row's jsonb once
              -- for every reference below (measured: 2.5x slower).
              offset 0) r
       where case r.operation
               when 'on_create' then workflow.%9$I(jsonb_populate_record(null::%12$s, r.new_row))
               when 'on_update' then workflow.%10$I(jsonb_populate_record(null::%12$s, r.old_row),
                                                    jsonb_populate_record(null::%12$s, r.new_row))
               else workflow.%11$I(jsonb_populate_record(null::%12$s, r.old_row))
             end
       order by r.ord
    $q$,
      v_entity.id, v_entity.aggregate_type, v_key_old, v_key_new,
      workflow.wal_row_expression(v_entity.relation, 's.d'), workflow.wal_row_expression(v_entity.relation, 's.n'),
      v_full, v_entity.relation::oid,
      workflow.capture_filter_name(v_entity.id, 'insert'), workflow.capture_filter_name(v_entity.id, 'update'),
      workflow.capture_filter_name(v_entity.id, 'delete'), v_entity.rowtype)
    using p_changes, v_progress.commit_lsn, v_progress.seq;
    get diagnostics v_rows = row_count;
    v_count := v_count + v_rows;
  end loop;
  insert into workflow.wal_capture_progress (slot_name, commit_lsn, seq)
  values (p_slot, (v_last ->> 'l')::pg_lsn, (v_last ->> 's')::int)
  on conflict (slot_name) do update
    set commit_lsn = excluded.commit_lsn, seq = excluded.seq, updated_at = now()
    where (excluded.commit_lsn, excluded.seq) > (workflow.wal_capture_progress.commit_lsn, workflow.wal_capture_progress.seq);
  if v_count > 0 then
    perform workflow.wake_daemons();
  end if;
  return v_count;
end
$fn$;

-- Records where a slot's reader starts: nothing committed at or before p_lsn is appended by it.
create function workflow.start_wal_capture_at(p_slot text, p_lsn pg_lsn) returns void
language sql security definer
set search_path = pg_catalog, pg_temp
as $$
  insert into workflow.wal_capture_progress (slot_name, commit_lsn, seq)
  values (p_slot, p_lsn, 2147483647)
  on conflict (slot_name) do update set commit_lsn = excluded.commit_lsn, seq = excluded.seq, updated_at = now()
$$;

select workflow.apply_privileges();
