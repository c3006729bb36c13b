import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { isUuid } from '../is-uuid.js';
import { ConfigReader } from './config-reader.js';
import type { BatchedWriteKind } from '../db/write-batch.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';
import { triggeringRowKey } from '../model/types.js';
import { sqlState } from '../sql-state.js';

const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;

// One statement: checks the recipients exist, resolves earlier alerts (when asked), writes the alert
// and its recipients and wakes open pages. Nothing is written when a recipient is unknown. The
// NOTIFY is sent only while an alert stream listens (sql/000019_alert_listeners.sql): it holds the
// cluster's notify lock through the commit's WAL flush, on which the engine's commits would queue.
//
// It is prepared and planned once per connection, which takes a generic plan that is no dearer than
// the plans made for each call's values: hence two statements rather than resolve_prior as a
// parameter (the plan for "no" would be far cheaper), and recipients as a jsonb list rather than
// arrays (whose length the planner reads from the values).
function createAlertSql(resolvePrior: boolean): string {
  const resolved = resolvePrior
    ? `
), resolved as (
  update workflow.alerts set status = 'resolved'
   where not exists (select 1 from missing)
     and alert_type = $1 and source_entity_id is not distinct from $6::uuid and source_entity_name = $5
     and status in ('active', 'acknowledged')
  returning id`
    : '';
  return `
with wanted as (
  select * from jsonb_to_recordset($8::jsonb) as w (recipient_type text, recipient_id uuid)
), missing as (
  select w.recipient_type, w.recipient_id from wanted w
   where (w.recipient_type = 'user' and not exists (select 1 from core.users u where u.id = w.recipient_id))
      or (w.recipient_type = 'role' and not exists (select 1 from core.roles r where r.id = w.recipient_id))${resolved}
), alert as (
  insert into workflow.alerts (alert_type, severity, title, message, context, source_entity_name,
                              source_entity_id, source_rule_id, expires_date)
  select $1, $2, $3, $4, $7::jsonb, $5, $6::uuid, $9::uuid, now() + $10::interval
   where not exists (select 1 from missing)
  returning id, expires_date
), recipients as (
  insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id)
  select alert.id, w.recipient_type, w.recipient_id from alert, wanted w
  returning 1
)
select (select id from alert) as id,
       (select expires_date from alert) as expires_date,
       ${resolvePrior ? '(select count(*) from resolved)' : '0::bigint'} as resolved,
       (select count(*) from recipients) as recipients,
       (select coalesce(jsonb_agg(jsonb_build_object('type', recipient_type, 'id', recipient_id)), '[]')
          from missing) as missing,
       (select pg_notify('rulebook_alerts', id::text) from alert where workflow.alert_stream_listening())
         as notified`;
}

const CREATE_ALERT = { name: 'rulebook.create_alert', text: createAlertSql(false) };

// The alerts of a batch's events (those that resolve no earlier alert) in one statement: all of
// them, or none when any recipient is unknown (the engine then handles the batch again with every
// alert written at once, which finds the failing one). The ids are made here so that each action's
// result can name its alert before the statement runs.
const CREATE_ALERTS: BatchedWriteKind = {
  name: 'rulebook.create_alerts',
  text: `
with items as (
  select i.ord, x.*
    from jsonb_array_elements($1::jsonb) with ordinality as i (item, ord),
         jsonb_to_record(i.item) as x (id uuid, alert_type text, severity text, title text, message text,
                                       context jsonb, source_entity_name text, source_entity_id uuid,
                                       source_rule_id uuid, expires_in text, recipients jsonb)
), wanted as (
  select i.ord, i.id, w.recipient_type, w.recipient_id
    from items i, jsonb_to_recordset(i.recipients) as w (recipient_type text, recipient_id uuid)
), missing as (
  select w.ord from wanted w
   where (w.recipient_type = 'user' and not exists (select 1 from core.users u where u.id = w.recipient_id))
      or (w.recipient_type = 'role' and not exists (select 1 from core.roles r where r.id = w.recipient_id))
), alert as (
  insert into workflow.alerts (id, alert_type, severity, title, message, context, source_entity_name,
                              source_entity_id, source_rule_id, expires_date)
  select i.id, i.alert_type, i.severity, i.title, i.message, i.context, i.source_entity_name,
         i.source_entity_id, i.source_rule_id, now() + i.expires_in::interval
    from items i
   where not exists (select 1 from missing)
   order by i.ord
  returning id, expires_date
), recipients as (
  insert into workflow.alert_recipients (alert_id, recipient_type, recipient_id)
  select w.id, w.recipient_type, w.recipient_id from wanted w
   where not exists (select 1 from missing)
   order by w.ord
  returning 1
), notified as (
  select count(pg_notify('rulebook_alerts', id::text)) as n from alert where workflow.alert_stream_listening()
)
select i.ord, a.expires_date, exists (select 1 from missing m where m.ord = i.ord) as missing,
       (select n from notified) as notified, (select count(*) from recipients) as recipients
  from items i left join alert a on a.id = i.id`,
};
const CREATE_ALERT_RESOLVING = { name: 'rulebook.create_alert_resolving', text: createAlertSql(true) };

interface CreateAlertRow {
  id: string | null;
  expires_date: Date | null;
  resolved: string;
  recipients: string;
  missing: { type: string; id: string }[];
}

async function runCreateAlert(
  client: pg.ClientBase,
  resolvePrior: boolean,
  expiresIn: string | null,
  values: unknown[],
): Promise<CreateAlertRow[]> {
  try {
    const statement = resolvePrior ? CREATE_ALERT_RESOLVING : CREATE_ALERT;
    return (await client.query<CreateAlertRow>({ ...statement, values })).rows;
  } catch (error) {
    // Class 22 here can only be expires_in, the one value the statement parses.
    if (sqlState(error)?.startsWith('22') && expiresIn !== null) {
      throw new ActionError(
        `create_alert: config.expires_in ${JSON.stringify(expiresIn)} is not an interval (${(error as Error).message})`,
      );
    }
    throw error;
  }
}

function recipientIds(config: ConfigReader, kind: 'users' | 'roles'): string[] {
  const recipients = config.object('recipients') ?? {};
  const ids = recipients[kind] ?? [];
  if (!Array.isArray(ids) || !ids.every(isUuid)) {
    throw new ActionError(`create_alert: config.recipients.${kind} must be an array of uuids`);
  }
  return ids;
}

/** The single uuid primary key of the triggering row, which alerts keep as source_entity_id. */
function sourceEntityId(rowKey: Record<string, unknown>): string | null {
  const values = Object.values(rowKey);
  return values.length === 1 && isUuid(values[0]) ? values[0] : null;
}

export const createAlert: ActionHandler = {
  type: 'create_alert',
  async execute(context: ActionContext) {
    const config = new ConfigReader('create_alert', context.action.config);
    const severity = config.oneOf('severity', SEVERITIES, 'medium');
    const title = context.render(config.string('title'));
    const message = context.render(config.string('message'));
    const alertType = config.has('alert_type')
      ? context.render(config.string('alert_type'))
      : context.rule.name;
    const users = recipientIds(config, 'users');
    const roles = recipientIds(config, 'roles');
    if (users.length + roles.length === 0) {
      throw new ActionError('create_alert: config.recipients needs at least one user or role');
    }
    const alertContext = config.has('context') ? context.renderValue(config.raw('context')) : {};
    const expiresIn = config.optionalString('expires_in') ?? null;
    const entity = context.rule.entity;
    const resolvePrior = config.boolean('resolve_prior', false);
    const recipients = [
      ...users.map((id) => ({ recipient_type: 'user', recipient_id: id })),
      ...roles.map((id) => ({ recipient_type: 'role', recipient_id: id })),
    ];
    if (context.batch && !resolvePrior) {
      // Resolving earlier alerts depends on which alerts exist when it runs: those run at once.
      const result = {
        alert_id: randomUUID(),
        alert_type: alertType,
        severity,
        recipients: recipients.length,
        resolved_prior: 0,
        expires_date: null as string | null,
      };
      context.batch.add(
        CREATE_ALERTS,
        {
          id: result.alert_id,
          alert_type: alertType,
          severity,
          title,
          message,
          context: alertContext,
          source_entity_name: `${entity.schemaName}.${entity.name}`,
          source_entity_id: sourceEntityId(triggeringRowKey(context.event)),
          source_rule_id: context.rule.id,
          expires_in: expiresIn,
          recipients,
        },
        (row) => {
          if (row.missing) throw new ActionError('create_alert: unknown recipients');
          result.expires_date = row.expires_date instanceof Date ? row.expires_date.toISOString() : null;
        },
      );
      return result;
    }
    const rows = await runCreateAlert(context.client, resolvePrior, expiresIn, [
      alertType,
      severity,
      title,
      message,
      `${entity.schemaName}.${entity.name}`,
      sourceEntityId(triggeringRowKey(context.event)),
      JSON.stringify(alertContext),
      JSON.stringify(recipients),
      context.rule.id,
      expiresIn,
    ]);
    const row = rows[0]!;
    if (row.missing.length > 0) {
      const list = row.missing.map((m) => `${m.type} ${m.id}`).join(', ');
      throw new ActionError(`create_alert: unknown recipients: ${list}`, { missing: row.missing });
    }
    return {
      alert_id: row.id,
      alert_type: alertType,
      severity,
      recipients: Number(row.recipients),
      resolved_prior: Number(row.resolved),
      expires_date: row.expires_date?.toISOString() ?? null,
    };
  },
};
