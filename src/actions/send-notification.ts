import { enqueueNotification, type NewDelivery } from '../delivery/enqueue.js';
import { describePerson, resolveReferences, type Person, type RecipientReference } from './recipients.js';
import {
  NOTIFICATION_CHANNELS,
  type NotificationChannel,
  type NotificationPayload,
} from '../delivery/types.js';
import { isUuid } from '../is-uuid.js';
import { ConfigReader } from './config-reader.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';

const TYPE = 'send_notification';
const PRIORITIES = ['low', 'medium', 'high', 'critical'] as const;

function recipientIds(config: ConfigReader, kind: 'users' | 'roles'): string[] {
  const recipients = config.object('recipients') ?? {};
  const ids = recipients[kind] ?? [];
  if (!Array.isArray(ids) || !ids.every(isUuid)) {
    throw new ActionError(`${TYPE}: config.recipients.${kind} must be an array of uuids`);
  }
  return ids.map((id) => id.toLowerCase());
}

function channels(config: ConfigReader): NotificationChannel[] {
  if (!config.has('channels')) return ['in_app'];
  const wanted = config.stringArray('channels');
  const unknown = wanted.filter((channel) => !(NOTIFICATION_CHANNELS as readonly string[]).includes(channel));
  if (unknown.length > 0) {
    throw new ActionError(
      `${TYPE}: config.channels has unknown channels ${unknown.map((c) => JSON.stringify(c)).join(', ')} ` +
        `(known: ${NOTIFICATION_CHANNELS.join(', ')})`,
    );
  }
  if (wanted.length === 0) throw new ActionError(`${TYPE}: config.channels needs at least one channel`);
  return [...new Set(wanted as NotificationChannel[])];
}

/**
 * send_notification: one delivery per recipient and channel, queued for the delivery worker.
 *
 * config: recipients { users: [uuid], roles: [uuid] } (roles expand to their active members),
 * channels (email, in_app, sms, push; default in_app), title and body (templated, plain text),
 * priority (low, medium, high, critical; default medium). A user without an e-mail address gets a
 * failed e-mail delivery at once; an unknown user or role id fails the action.
 */
export const sendNotification: ActionHandler = {
  type: TYPE,
  async execute(context: ActionContext) {
    const config = new ConfigReader(TYPE, context.action.config);
    const users = recipientIds(config, 'users');
    const roles = recipientIds(config, 'roles');
    if (users.length + roles.length === 0) {
      throw new ActionError(`${TYPE}: config.recipients needs at least one user or role`);
    }
    const wantedChannels = channels(config);
    const title = context.render(config.string('title'));
    const body = config.has('body') ? context.render(config.string('body')) : '';
    const priority = config.oneOf('priority', PRIORITIES, 'medium');

    const references: RecipientReference[] = [
      ...users.map((id, index) => ({
        id,
        where: `config.recipients.users[${index}]`,
        kind: 'user' as const,
      })),
      ...roles.map((id, index) => ({
        id,
        where: `config.recipients.roles[${index}]`,
        kind: 'role' as const,
      })),
    ];
    const resolved = await resolveReferences(context.client, TYPE, references);
    const people = new Map<string, Person>();
    const emptyRoles: string[] = [];
    for (const reference of resolved) {
      if (reference.kind === 'role' && reference.people.length === 0) emptyRoles.push(reference.reference.id);
      for (const person of reference.people) if (!people.has(person.id)) people.set(person.id, person);
    }
    if (people.size === 0) {
      throw new ActionError(
        `${TYPE}: no recipients: ${emptyRoles.map((id) => `role ${id}`).join(', ')} has no active members`,
      );
    }

    const deliveries: NewDelivery[] = [];
    const addresses: Record<string, string> = {};
    for (const person of people.values()) {
      for (const channel of wantedChannels) {
        let error: string | undefined;
        if (!person.isActive) {
          error = `${describePerson(person)} is not active (core.users.is_active is false)`;
        } else if (channel === 'email' && !person.email) {
          error = `${describePerson(person)} has no e-mail address in core.users`;
        } else if (channel === 'email' && person.email) {
          addresses[person.id] = person.email;
        }
        deliveries.push({ recipientId: person.id, channel, ...(error !== undefined ? { error } : {}) });
      }
    }
    const payload: NotificationPayload = {
      kind: 'notification',
      title,
      body,
      priority,
      addresses,
      rule: { id: context.rule.id, name: context.rule.name },
    };
    const queued = await enqueueNotification(context, payload, deliveries);
    return emptyRoles.length > 0 ? { ...queued, roles_without_active_members: emptyRoles } : queued;
  },
};
