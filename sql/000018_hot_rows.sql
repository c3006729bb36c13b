-- Events waiting for a retry (run_after set by a failed attempt) must hold back the later events of
-- their own row, and nothing else. The claim finds them here rather than in the head of the queue,
-- where enough of them would fill the window that it reads and stall every other row.
--
-- Partial, so that a captured event (run_after is null) is never written into it: the capture
-- trigger pays one predicate check, not an index insert. Only failed attempts and dead events that
-- failed are in it.
create index events_waiting on workflow.events (entity_id, id) where run_after is not null;

-- The rows whose earliest pending event waits for a retry, and that event's id, read from
-- events_waiting. A function of its own so that it can forbid the sequential scan: the planner
-- picks one for this lookup when the statistics of workflow.events were taken while it was empty
-- (a queue drained between analyses), which costs each claim a read of the whole queue (measured:
-- 10 ms a claim with 50,000 events queued, against 0.01 ms through the index). Granted like every
-- workflow function by workflow.apply_privileges (rulebook_admin, rulebook_daemon).
create function workflow.waiting_rows() returns table (entity_id uuid, row_key jsonb, id bigint)
language sql stable
set enable_seqscan = off
as $$
  select e.entity_id, e.row_key, min(e.id)
    from workflow.events e
   where e.run_after is not null and e.run_after > now() and e.state = 'pending'
   group by e.entity_id, e.row_key
$$;
