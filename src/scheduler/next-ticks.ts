import { createTask } from 'node-cron';
import type { Schedule } from './schedule.js';

/**
 * The next `count` ticks of a schedule after now, as the scheduler's node-cron task will fire them
 * (same expression, same time zone). The task is never started: it only computes.
 */
export async function nextTicks(schedule: Schedule, count: number): Promise<Date[]> {
  const task = createTask(schedule.expression, () => {}, { timezone: schedule.timezone });
  try {
    return task.getNextRuns(count);
  } finally {
    await task.destroy();
  }
}
