-- Retention (issue 10): the maintenance job deletes old executions, finished deliveries (with their
-- payloads and reads), finished allocation results and fired ticks, in small batches; `cleanup`
-- deletes dead events and failed deliveries on request. The batches are written in
-- src/retention/batches.ts; this migration adds only the indexes they walk.
--
-- Each index here costs the writes that enter it, so each one is partial and covers only the rows a
-- batch may delete:
-- - automation_executions needs nothing new: idx_automation_executions_date (executed_at) is walked.
-- - notification_deliveries: a delivery enters one of these only when it finishes (the worker's
--   UPDATE to sent/delivered/failed/bounced), never when the engine writes it as pending.
-- - allocation_results: a row enters when it is written failed, or released or fulfilled later.
-- - workflow.events gets no index: every captured write would pay for it. Dead events are found by
--   walking the primary key from where the previous batch stopped.

create index idx_notification_deliveries_finished on workflow.notification_deliveries (created_date, id)
  where status in ('sent', 'delivered');

create index idx_notification_deliveries_failed on workflow.notification_deliveries (created_date, id)
  where status in ('failed', 'bounced');

-- A reservation or allocation still holding stock is not finished: its row is the only record of
-- which lots hold it, which workflow.release_allocation needs to give it back.
create index idx_allocation_results_finished on workflow.allocation_results (created_date, id)
  where allocation_data ->> 'status' = 'failed' or allocation_data ? 'released_at' or allocation_data ? 'fulfilled_at';

comment on table workflow.schedule_runs is
  'Ticks of scheduled rules that have fired, one row each; kept for RULEBOOK_RETAIN_SCHEDULE_TICKS (default 7 days) by the daemon''s maintenance job.';
