import type pg from 'pg';
import { ActionError } from './types.js';

/** A core.users row that a notification goes to. */
export interface Person {
  readonly id: string;
  readonly email: string | null;
  readonly name: string | null;
  readonly isActive: boolean;
}

/** A user or role id from an action's config; `where` names the config field, for errors. */
export interface RecipientReference {
  readonly id: string;
  readonly where: string;
  /** What the id must be; undefined accepts either (send_email's `to` mixes them). */
  readonly kind?: 'user' | 'role';
}

export interface ResolvedReference {
  readonly reference: RecipientReference;
  readonly kind: 'user' | 'role';
  /** The user itself, or the role's active members (none for an empty role). */
  readonly people: readonly Person[];
}

// One row per user id, per active member of a role id (by user id), or one row with no user for a
// role without active members; kind is null for an id that is neither.
const RESOLVE = `
with wanted as (select distinct unnest($1::uuid[]) as id)
select w.id::text as wanted_id,
       case when u.id is not null then 'user' when r.id is not null then 'role' end as kind,
       coalesce(u.id, m.id)::text as user_id,
       coalesce(u.email, m.email) as email,
       coalesce(u.name, m.name) as name,
       coalesce(u.is_active, m.is_active) as is_active
  from wanted w
  left join core.users u on u.id = w.id
  left join core.roles r on r.id = w.id and u.id is null
  left join lateral (
    select mu.id, mu.email, mu.name, mu.is_active
      from core.user_roles ur join core.users mu on mu.id = ur.user_id
     where ur.role_id = r.id and mu.is_active
  ) m on true
 order by w.id, coalesce(u.id, m.id)`;

/**
 * Looks up user and role ids, expanding roles to their active members (core.user_roles and
 * core.users.is_active). Throws an ActionError naming every id that is unknown or of the wrong kind.
 */
export async function resolveReferences(
  client: pg.ClientBase,
  actionType: string,
  references: readonly RecipientReference[],
): Promise<ResolvedReference[]> {
  if (references.length === 0) return [];
  const { rows } = await client.query<{
    wanted_id: string;
    kind: 'user' | 'role' | null;
    user_id: string | null;
    email: string | null;
    name: string | null;
    is_active: boolean | null;
  }>(RESOLVE, [references.map((reference) => reference.id)]);
  const found = new Map<string, { kind: 'user' | 'role' | null; people: Person[] }>();
  for (const row of rows) {
    const entry = found.get(row.wanted_id) ?? { kind: row.kind, people: [] };
    found.set(row.wanted_id, entry);
    if (row.user_id !== null) {
      entry.people.push({
        id: row.user_id,
        email: row.email,
        name: row.name,
        isActive: row.is_active !== false,
      });
    }
  }
  const problems: string[] = [];
  const resolved: ResolvedReference[] = [];
  for (const reference of references) {
    const entry = found.get(reference.id.toLowerCase());
    if (!entry || entry.kind === null) {
      problems.push(
        `${reference.where}: ${reference.id} is neither a user (core.users) nor a role (core.roles)`,
      );
    } else if (reference.kind !== undefined && entry.kind !== reference.kind) {
      problems.push(`${reference.where}: ${reference.id} is a ${entry.kind}, not a ${reference.kind}`);
    } else {
      resolved.push({ reference, kind: entry.kind, people: entry.people });
    }
  }
  if (problems.length > 0) {
    throw new ActionError(`${actionType}: unknown recipients: ${problems.join('; ')}`, { problems });
  }
  return resolved;
}

/** "user <id> (<name>)", for messages about a person. */
export function describePerson(person: Person): string {
  return person.name ? `user ${person.id} (${person.name})` : `user ${person.id}`;
}
