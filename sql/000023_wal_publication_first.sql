-- WAL capture: the publication exists before the slot is created. pgoutput looks the publication
-- up in the catalog as it was when each change committed; a slot created before the publication
-- decodes the changes committed between the two with a catalog that has no publication, and fails
-- on them ("publication rulebook_capture does not exist") every time it is read: a database written
-- to while it switched to WAL mode stopped capturing. Created empty here; set_capture_mode('wal')
-- adds the tables, as before.
create function workflow.create_capture_publication() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if not exists (select from pg_publication where pubname = workflow.wal_capture_publication()) then
    execute format('create publication %I with (publish = ''insert, update, delete'', publish_via_partition_root = true)',
                   workflow.wal_capture_publication());
  end if;
end
$$;

revoke all on function workflow.create_capture_publication() from public;
grant execute on function workflow.create_capture_publication() to rulebook_daemon;
