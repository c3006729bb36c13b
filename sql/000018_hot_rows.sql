-- Events waiting for a retry (run_after set by a failed attempt) must hold back the later events of
-- their own row, and nothing else. The claim finds them here rather than in the head of the queue,
-- where enough of them would fill the window that it reads and stall every other row.
--
-- Partial, so that a captured event (run_after is null) is never written into it: the capture
-- trigger pays one predicate check, not an index insert. Only failed attempts and dead events that
-- failed are in it.
create index events_waiting on workflow.events (entity_id, id) where run_after is not null;
