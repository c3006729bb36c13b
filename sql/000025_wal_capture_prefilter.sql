-- WAL capture: the reader drops changes no active rule watches before it appends them
-- (src/capture/wal/capture-prefilter.ts). Appending a change costs its parsing and two row casts
-- at append time even when the capture filter then says no (measured: a 16-client UPDATE of a
-- column no rule watches, 34 us of the append's CPU per change, nothing appended).

-- What the capture filters of 000004's refresh_capture let through, per relation under WAL
-- capture, as of the caller's snapshot: i / d whether inserts / deletes are captured, u the
-- columns whose change makes an update captured (null: any column, an on_update rule without field
-- conditions; []: none). pending: the transaction p_xid (32 bits, as the WAL reports it) is still
-- in progress in this snapshot, so a rule change it made is not seen yet and the caller asks
-- again. The reader keeps every change of a relation not listed.
create function workflow.wal_capture_prefilter(p_xid bigint) returns jsonb
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select jsonb_build_object(
    'pending', p_xid is not null and exists (
      select from pg_snapshot_xip(pg_current_snapshot()) x where x::text::bigint % 4294967296 = p_xid),
    'relations', coalesce((
      select jsonb_agg(jsonb_build_object('r', t.relation_id::bigint, 'i', f.i, 'd', f.d, 'u', f.u))
        from workflow.wal_capture_tables t
        join workflow.entities e on workflow.entity_relation(e.schema_name, e.name) = t.relation_id
        cross join lateral (
          select e.is_active is not false and bool_or(k.name = 'on_create') is true as i,
                 e.is_active is not false and bool_or(k.name = 'on_delete') is true as d,
                 case
                   when e.is_active is false or not (bool_or(k.name = 'on_update') is true) then '[]'::jsonb
                   -- An on_update rule without field conditions watches every column.
                   when bool_or(k.name = 'on_update' and coalesce(jsonb_array_length(
                          case jsonb_typeof(r.trigger_conditions -> 'field_conditions')
                            when 'array' then r.trigger_conditions -> 'field_conditions' end), 0) = 0) then null
                   else coalesce((
                     select jsonb_agg(distinct c ->> 'field_name')
                       from workflow.automation_rules r2
                       join workflow.trigger_types t2 on t2.id = r2.trigger_type_id
                      cross join lateral jsonb_array_elements(r2.trigger_conditions -> 'field_conditions') c
                      where r2.entity_id = e.id and r2.is_active and t2.name = 'on_update'
                        and jsonb_typeof(r2.trigger_conditions -> 'field_conditions') = 'array'), '[]')
                 end as u
            from workflow.automation_rules r
            join workflow.trigger_types k on k.id = r.trigger_type_id
           where r.entity_id = e.id and r.is_active
        ) f), '[]'::jsonb))
$$;

revoke all on function workflow.wal_capture_prefilter(bigint) from public;
grant execute on function workflow.wal_capture_prefilter(bigint) to rulebook_admin, rulebook_daemon;

-- A transaction that changes what the prefilter reads (the rules, the entities, the trigger types)
-- says so in the WAL in WAL mode, where the reader meets it in commit order and loads the prefilter
-- again before it drops anything after it. Statement triggers on those tables themselves (not on
-- workflow.rule_set_version, which they also bump), so that nothing else needs to stay as it is.
create function workflow.announce_wal_rule_change() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if current_setting('wal_level') = 'logical' then
    perform pg_logical_emit_message(true, 'rulebook.rules', '');
  end if;
  return null;
end
$$;

revoke all on function workflow.announce_wal_rule_change() from public;
grant execute on function workflow.announce_wal_rule_change() to rulebook_admin, rulebook_daemon;

create trigger announce_wal_rule_change after insert or update or delete or truncate on workflow.automation_rules
  for each statement execute function workflow.announce_wal_rule_change();
create trigger announce_wal_rule_change after insert or update or delete or truncate on workflow.entities
  for each statement execute function workflow.announce_wal_rule_change();
create trigger announce_wal_rule_change after insert or update or delete or truncate on workflow.trigger_types
  for each statement execute function workflow.announce_wal_rule_change();

-- Two lookups of every append, 000020's and 000022's queries unchanged, in PL/pgSQL: a SQL
-- function that cannot be inlined (SET search_path) plans its query on every call, PL/pgSQL keeps
-- the plan for the session (measured per call: 130-210 us against 35-50 us, and 290-410 us against
-- 170-250 us). Each append calls the first twice per table and the second once, which was a good
-- part of an append's fixed cost, paid per batch.
create or replace function workflow.wal_row_expression(p_relation regclass, p_source text) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  return (
    select coalesce(string_agg(chunk, ' || '), '''{}''::jsonb')
      from (select 'jsonb_build_object(' || string_agg(format('%L, (%s ->> %L)::%s', attname, p_source, attname,
                                                              format_type(atttypid, atttypmod)), ', ' order by attnum) || ')' as chunk
              from (select attname, atttypid, atttypmod, attnum, (row_number() over (order by attnum) - 1) / 50 as part
                      from pg_attribute
                     where attrelid = p_relation and attnum > 0 and not attisdropped) a
             group by part order by part) c);
end
$$;

create or replace function workflow.wal_capture_entities(p_relations oid[])
returns table (id uuid, relation oid, aggregate_type text, rowtype text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return query
  select e.id, c.oid, workflow.outbox_aggregate_type(e.schema_name, e.name), format('%I.%I', n.nspname, c.relname)
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    join workflow.entities e on workflow.entity_relation(e.schema_name, e.name) = c.oid
   where c.oid = any (p_relations);
end
$$;
