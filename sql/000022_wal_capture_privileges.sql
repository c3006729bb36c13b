-- WAL capture, privileges (issue 11 review; docs/privileges.md, docs/capture-wal.md). 000020 ran
-- an application owner's code as the installer, let any writer forge the chain depth, and let
-- rulebook_admin switch, lock or skip tables it has no rights on. Forward-only: 000020's functions
-- are replaced here.

-- Is p_relation a registered table (not a view)? The switching functions below act on nothing else.
create function workflow.is_registered_table(p_relation regclass) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (select from workflow.entities e
                   join workflow.entity_types t on t.id = e.entity_type_id
                  where t.name <> 'view' and workflow.entity_relation(e.schema_name, e.name) = p_relation)
$$;

-- Gives rulebook_capture USAGE on the schemas whose names the WAL append writes for p_relation
-- (the table's, for its row type, and its columns' types', for the casts): it looks them up by
-- name as rulebook_capture. USAGE lets it resolve names there, nothing more (no table privilege).
-- Without a grant option on such a schema (a non-superuser installer that does not own it) the
-- grant does nothing, so the check below says who must give it rather than the reader failing.
create function workflow.grant_wal_capture_schemas(p_relation regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_schema name;
begin
  for v_schema in
    select distinct n.nspname
      from (select c.relnamespace as nsp from pg_class c where c.oid = p_relation
            union
            select coalesce(elem.typnamespace, t.typnamespace)
              from pg_attribute a
              join pg_type t on t.oid = a.atttypid
              left join pg_type elem on elem.oid = t.typelem and t.typcategory = 'A'
             where a.attrelid = p_relation and a.attnum > 0 and not a.attisdropped) s
      join pg_namespace n on n.oid = s.nsp
     where n.nspname not in ('pg_catalog', 'information_schema')
  loop
    if not has_schema_privilege('rulebook_capture', v_schema, 'USAGE') then
      execute format('grant usage on schema %I to rulebook_capture', v_schema);
      if not has_schema_privilege('rulebook_capture', v_schema, 'USAGE') then
        raise exception 'rulebook: WAL capture of % needs USAGE on schema % for rulebook_capture, which % may not grant', p_relation, v_schema, current_user
          using errcode = 'insufficient_privilege',
                hint = format('Have the owner of schema %I run: grant usage on schema %I to rulebook_capture; then retry.', v_schema, v_schema);
      end if;
    end if;
  end loop;
end
$$;

-- Puts one table under WAL capture: the old row of every UPDATE and DELETE in the WAL (REPLICA
-- IDENTITY FULL), its capture triggers disabled, the table in the publication. Idempotent.
-- SECURITY DEFINER: ALTER TABLE and ALTER PUBLICATION need the table's owner, while rulebook_admin
-- registers tables with the TRIGGER privilege alone. It acts only on registered tables (000020 took any
-- table: rulebook_admin could set any table's replica identity, lock it, publish it).
create or replace function workflow.wal_capture_table(p_relation regclass) returns void
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
  if not workflow.is_registered_table(p_relation) then
    raise exception 'rulebook: % is not a registered table; only registered tables are switched to WAL capture', p_relation
      using errcode = 'insufficient_privilege';
  end if;
  perform workflow.grant_wal_capture_schemas(p_relation);
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
-- of the publication. Idempotent. Only a registered table or one WAL mode switched (listed in
-- wal_capture_tables, which only these functions write: a table deleted from workflow.entities in
-- WAL mode is given back too).
create or replace function workflow.trigger_capture_table(p_relation regclass) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '3s'
as $$
declare
  v_trigger name;
  v_previous "char";
  v_partition regclass;
begin
  if not workflow.is_registered_table(p_relation)
     and not exists (select from workflow.wal_capture_tables where relation_id = p_relation) then
    raise exception 'rulebook: % is neither registered nor under WAL capture; only such tables are switched back to trigger capture', p_relation
      using errcode = 'insufficient_privilege';
  end if;
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

-- The entities of the relations in a batch, for the append: rulebook_capture does not read
-- workflow.entities (000015), so this runs as the installer. Catalog lookups only, no owner code.
create function workflow.wal_capture_entities(p_relations oid[])
returns table (id uuid, relation oid, aggregate_type text, rowtype text)
language sql stable security definer
set search_path = pg_catalog, pg_temp
as $$
  select e.id, c.oid, workflow.outbox_aggregate_type(e.schema_name, e.name), format('%I.%I', n.nspname, c.relname)
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join workflow.entities e on workflow.entity_relation(e.schema_name, e.name) = c.oid
   where c.oid = any (p_relations)
$$;

-- 000020's append, unchanged but for its owner and the entity lookup above: it casts each column's text to the column's type
-- (a domain's CHECK, a type's input function) and calls the generated capture filters (the types'
-- operators), all of it the application owner's code. Owned by the installer, that code ran as the
-- installer (often a superuser). Owned by rulebook_capture, it runs as the role trigger capture
-- runs it as, which may insert events and write its own progress, nothing more.
-- The chain depth (p) comes from the reader, which passes only a depth the daemon signed
-- (workflow.wal_context_secret below).
create or replace function workflow.append_wal_changes(p_slot text, p_changes jsonb) returns integer
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
    select * from workflow.wal_capture_entities(
      array(select distinct (ch ->> 'r')::oid from jsonb_array_elements(p_changes) ch))
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

-- What the append needs as rulebook_capture, besides inserting events (000010).
grant select, insert, update on workflow.wal_capture_progress to rulebook_capture;
grant execute on function workflow.wal_capture_entities(oid[]), workflow.wal_row_expression(regclass, text),
  workflow.capture_filter_name(uuid, text), workflow.wake_daemons() to rulebook_capture;

-- A non-superuser may give an object only to a role that may create in its schema; CREATE on
-- workflow for rulebook_capture holds for this statement only (as in 000010).
do $$
begin
  if (select rolsuper from pg_catalog.pg_roles where rolname = current_user) then
    alter function workflow.append_wal_changes(text, jsonb) owner to rulebook_capture;
  else
    grant create on schema workflow to rulebook_capture;
    alter function workflow.append_wal_changes(text, jsonb) owner to rulebook_capture;
    revoke create on schema workflow from rulebook_capture;
  end if;
end
$$;

-- The chain depth in WAL mode. The WAL holds no session settings, so the daemon declares a
-- transaction's depth in a logical decoding message, which any role may emit
-- (pg_logical_emit_message is executable by PUBLIC): a bare 'rulebook.depth' message would let a
-- writer switch every rule off for its write. The daemon signs its message with this secret, bound
-- to its transaction id: content 'depth:hex(sha256(secret || ':' || xid || ':' || depth))', the xid
-- as the WAL reports it (32 bits). Only rulebook_daemon reads the secret (apply_privileges below);
-- the reader verifies the signature and ignores (counts, logs) a message that does not verify.
create table workflow.wal_context_secret (
  singleton boolean primary key default true check (singleton),
  secret text not null
);
-- gen_random_uuid draws from the server's strong random source (pg_strong_random).
insert into workflow.wal_context_secret (secret)
values (replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

comment on table workflow.wal_context_secret is
  'The key the daemon signs its chain-depth messages with in WAL capture; readable by rulebook_daemon only (docs/capture-wal.md).';

-- apply_privileges as in 000012, plus: rulebook_admin reads but does not write WAL capture's state
-- (the mode, the switched tables, the slot's progress) nor calls the functions that switch tables or
-- move the progress (it could lock, publish or skip tables it has no rights on); the signing secret
-- is the daemon's alone.
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
      if v.proname in ('append_wal_changes', 'start_wal_capture_at', 'set_capture_mode', 'wal_capture_table',
                       'trigger_capture_table', 'leave_wal_capture', 'finish_leaving_wal_capture',
                       'create_capture_publication') then
        execute format('revoke all on function %s from rulebook_admin', v.fn);
        execute format('grant execute on function %s to rulebook_daemon', v.fn);
      elsif v.proname <> 'apply_privileges' then
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
  if to_regclass('workflow.wal_capture_progress') is not null then
    revoke insert, update, delete on workflow.capture_settings, workflow.wal_capture_tables,
      workflow.wal_capture_progress from rulebook_admin;
  end if;
  if to_regclass('workflow.wal_context_secret') is not null then
    revoke all on workflow.wal_context_secret from rulebook_admin, rulebook_daemon;
    grant select on workflow.wal_context_secret to rulebook_daemon;
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

-- Tables already under WAL capture were switched by 000020, before rulebook_capture needed USAGE
-- on their schemas.
do $$
declare
  v_relation regclass;
begin
  for v_relation in select relation_id::regclass from workflow.wal_capture_tables
                     where exists (select from pg_class where oid = relation_id) loop
    perform workflow.grant_wal_capture_schemas(v_relation);
  end loop;
end
$$;
