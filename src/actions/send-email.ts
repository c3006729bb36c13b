import { enqueueNotification, type NewDelivery } from '../delivery/enqueue.js';
import { describePerson, resolveReferences, type RecipientReference } from './recipients.js';
import type { EmailPayload } from '../delivery/types.js';
import { emailRecipientId } from '../delivery/uuid-v5.js';
import { isUuid } from '../is-uuid.js';
import { ConfigReader } from './config-reader.js';
import { ActionError, type ActionContext, type ActionHandler } from './types.js';

const TYPE = 'send_email';

/** A plain address: local@domain, no display name, no spaces or angle brackets. */
const ADDRESS = /^[^\s@<>(),;:"[\]\\]+@[^\s@<>(),;:"[\]\\]+$/;

export function isEmailAddress(value: string): boolean {
  return ADDRESS.test(value);
}

type Entry = { readonly where: string } & (
  { readonly kind: 'address'; readonly address: string } | { readonly kind: 'id'; readonly id: string }
);

/** A field that holds one string or an array of them; each entry is rendered. */
function renderedList(context: ActionContext, config: ConfigReader, field: string): Entry[] {
  if (!config.has(field)) return [];
  const raw = config.raw(field);
  const items = typeof raw === 'string' ? [raw] : raw;
  if (!Array.isArray(items) || items.some((item) => typeof item !== 'string')) {
    throw new ActionError(`${TYPE}: config.${field} must be a string or an array of strings`);
  }
  return (items as string[]).map((item, index) => {
    const where = typeof raw === 'string' ? `config.${field}` : `config.${field}[${index}]`;
    return classify(where, item, context.render(item).trim());
  });
}

/**
 * `source` is the config text and `value` what it rendered to. A user or role id is taken only from
 * literal config: a template fills in row data, and a writer of the row must not be able to pick
 * staff (or a whole role) as recipients by storing their id where an address belongs.
 */
function classify(where: string, source: string, value: string): Entry {
  if (value === '') throw new ActionError(`${TYPE}: ${where} rendered to an empty string`);
  if (isUuid(value)) {
    if (source.includes('{{')) {
      throw new ActionError(
        `${TYPE}: ${where} rendered to ${JSON.stringify(value)}, which looks like a user or role id; ` +
          'ids are taken only from literal config, never from templates, so write the id itself',
      );
    }
    return { where, kind: 'id', id: value.toLowerCase() };
  }
  if (isEmailAddress(value)) return { where, kind: 'address', address: value };
  throw new ActionError(
    `${TYPE}: ${where} is ${JSON.stringify(value)}, which is neither an e-mail address nor a user or role id`,
  );
}

interface Recipient {
  readonly recipientId: string;
  readonly address: string | null;
  readonly error?: string;
  /** A member of a role: sent the message as Bcc, so that the role's members are not disclosed. */
  readonly viaRole?: boolean;
}

/**
 * send_email: one message per recipient, queued for the delivery worker.
 *
 * config: to (addresses, user ids and role ids, mixed; templated, but ids only literally), subject,
 * text and/or html (templated; html escapes what it interpolates), optional cc (like to) and reply_to
 * (an address or a user id). Roles expand to their active members, who get the message as Bcc. A user without an e-mail address gets a failed
 * delivery row at once; an unknown user or role id fails the action.
 */
export const sendEmail: ActionHandler = {
  type: TYPE,
  async execute(context: ActionContext) {
    const config = new ConfigReader(TYPE, context.action.config);
    const to = renderedList(context, config, 'to');
    if (to.length === 0) throw new ActionError(`${TYPE}: config.to needs at least one recipient`);
    const cc = renderedList(context, config, 'cc');
    const replyToSource = config.has('reply_to') ? config.string('reply_to') : undefined;
    const replyToEntry =
      replyToSource === undefined
        ? undefined
        : classify('config.reply_to', replyToSource, context.render(replyToSource).trim());
    const subject = context.render(config.string('subject'));
    const text = config.has('text') ? context.render(config.string('text')) : undefined;
    const html = config.has('html') ? context.render(config.string('html'), { html: true }) : undefined;
    if (text === undefined && html === undefined) {
      throw new ActionError(`${TYPE}: config needs text, html or both`);
    }

    const entries = [...to, ...cc, ...(replyToEntry ? [replyToEntry] : [])];
    const references: RecipientReference[] = entries.flatMap((entry) =>
      entry.kind === 'id' ? [{ id: entry.id, where: entry.where }] : [],
    );
    const resolved = await resolveReferences(context.client, TYPE, references);
    const byId = new Map(resolved.map((reference) => [reference.reference.id, reference]));

    let replyTo: string | undefined;
    if (replyToEntry?.kind === 'address') replyTo = replyToEntry.address;
    if (replyToEntry?.kind === 'id') {
      const reference = byId.get(replyToEntry.id)!;
      const person = reference.people[0];
      if (reference.kind !== 'user' || !person) {
        throw new ActionError(`${TYPE}: config.reply_to must be an address or a user id, not a role id`);
      }
      if (!person.email) {
        throw new ActionError(`${TYPE}: config.reply_to: ${describePerson(person)} has no e-mail address`);
      }
      replyTo = person.email;
    }

    const emptyRoles: string[] = [];
    const seenIds = new Set<string>();
    const seenAddresses = new Set<string>();
    const expand = (list: readonly Entry[]): Recipient[] => {
      const recipients: Recipient[] = [];
      const add = (recipient: Recipient) => {
        const address = recipient.address?.toLowerCase();
        if (seenIds.has(recipient.recipientId) || (address && seenAddresses.has(address))) return;
        seenIds.add(recipient.recipientId);
        if (address) seenAddresses.add(address);
        recipients.push(recipient);
      };
      for (const entry of list) {
        if (entry.kind === 'address') {
          add({ recipientId: emailRecipientId(entry.address), address: entry.address });
          continue;
        }
        const reference = byId.get(entry.id)!;
        if (reference.kind === 'role' && reference.people.length === 0) emptyRoles.push(entry.id);
        const viaRole = reference.kind === 'role';
        for (const person of reference.people) {
          if (!person.isActive) {
            add({
              recipientId: person.id,
              address: null,
              error: `${describePerson(person)} is not active (core.users.is_active is false)`,
              viaRole,
            });
          } else if (!person.email) {
            add({
              recipientId: person.id,
              address: null,
              error: `${describePerson(person)} has no e-mail address in core.users`,
              viaRole,
            });
          } else {
            add({ recipientId: person.id, address: person.email, viaRole });
          }
        }
      }
      return recipients;
    };
    const toRecipients = expand(to);
    const ccRecipients = expand(cc);
    const all = [...toRecipients, ...ccRecipients];
    if (all.length === 0) {
      throw new ActionError(
        `${TYPE}: no recipients: ${emptyRoles.map((id) => `role ${id}`).join(', ')} has no active members`,
      );
    }
    // The To and Cc headers; role members get the message as Bcc (EmailSender).
    const sendable = (list: Recipient[]) =>
      list.flatMap((recipient) =>
        recipient.error === undefined && recipient.address && !recipient.viaRole ? [recipient.address] : [],
      );
    const payload: EmailPayload = {
      kind: 'email',
      subject,
      ...(text !== undefined ? { text } : {}),
      ...(html !== undefined ? { html } : {}),
      to: sendable(toRecipients),
      cc: sendable(ccRecipients),
      ...(replyTo !== undefined ? { reply_to: replyTo } : {}),
      addresses: Object.fromEntries(
        all.flatMap((recipient) =>
          recipient.error === undefined && recipient.address
            ? [[recipient.recipientId, recipient.address]]
            : [],
        ),
      ),
    };
    const deliveries: NewDelivery[] = all.map((recipient) => ({
      recipientId: recipient.recipientId,
      channel: 'email',
      ...(recipient.error !== undefined ? { error: recipient.error } : {}),
    }));
    const queued = await enqueueNotification(context, payload, deliveries);
    return emptyRoles.length > 0 ? { ...queued, roles_without_active_members: emptyRoles } : queued;
  },
};
