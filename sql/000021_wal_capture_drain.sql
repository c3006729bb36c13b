-- Leaving WAL capture without losing what the slot still holds (issue 11; docs/capture-wal.md).
--
-- A daemon in trigger mode that finds the database in WAL mode switches every table back to its
-- triggers and records the WAL position after that switch in drain_until, in one transaction.
-- Changes committed before it come from the slot (read up to it and appended with the same
-- idempotent workflow.append_wal_changes), changes after it from the triggers. Only then are the
-- slot and the publication dropped. A crash between the two leaves drain_until set, and the next
-- daemon in trigger mode finishes the drain: the progress row skips what was already appended.

alter table workflow.capture_settings add column drain_until pg_lsn;

comment on column workflow.capture_settings.drain_until is
  'After leaving WAL mode: the slot''s changes committed before this position are still to be appended; null when none are.';

-- What set_capture_mode('triggers', ...) does, except that the publication stays: decoding a
-- change committed after the publication was dropped fails ("publication does not exist"), and
-- the slot is read after the switch. Returns the switch point, recorded in drain_until.
create function workflow.leave_wal_capture() returns pg_lsn
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_relation regclass;
  v_lsn pg_lsn;
begin
  perform 1 from workflow.capture_settings for update;
  -- Logical decoding from SQL reads only flushed WAL: with synchronous_commit off, the last
  -- commits before the switch could otherwise be missed by the drain that follows. Flushing this
  -- transaction's commit flushes everything before it.
  perform set_config('synchronous_commit', 'on', true);
  for v_relation in
    select workflow.entity_relation(e.schema_name, e.name)
      from workflow.entities e
      join workflow.entity_types t on t.id = e.entity_type_id
     where t.name <> 'view'
    union
    -- Tables deleted from workflow.entities while in WAL mode.
    select relation_id::regclass from workflow.wal_capture_tables
     where exists (select from pg_class where oid = relation_id)
  loop
    continue when v_relation is null;
    perform workflow.trigger_capture_table(v_relation);
  end loop;
  delete from workflow.wal_capture_tables;
  -- Every writer of these tables that committed before this point had its triggers disabled
  -- (ENABLE TRIGGER waits for them); every later one has them enabled.
  v_lsn := pg_current_wal_insert_lsn();
  update workflow.capture_settings
     set mode = 'triggers', drain_until = v_lsn,
         changed_at = case when mode = 'triggers' then changed_at else now() end;
  return v_lsn;
end
$$;

-- After the drain: the publication dropped and the slot forgotten.
create function workflow.finish_leaving_wal_capture(p_slot text) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- A daemon that entered WAL mode again meanwhile owns the publication and the slot setting.
  if (select mode from workflow.capture_settings for update) <> 'triggers' then
    return;
  end if;
  if exists (select from pg_publication where pubname = workflow.wal_capture_publication()) then
    execute format('drop publication %I', workflow.wal_capture_publication());
  end if;
  update workflow.capture_settings set slot_name = null, drain_until = null where slot_name is not distinct from p_slot;
  delete from workflow.wal_capture_progress where slot_name = p_slot;
end
$$;

select workflow.apply_privileges();
