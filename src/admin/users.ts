import { inTransaction, type Queryable } from '../db/transaction.js';
import { AdminError, explainDatabaseError } from './errors.js';

export interface RoleRow {
  readonly id: string;
  readonly name: string;
}

export interface UserRow {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly roles: readonly string[];
}

/** Loose on purpose: one @, something on each side, no spaces. Delivery is the mail server's job. */
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+$/;

export async function addRole(db: Queryable, name: string): Promise<RoleRow> {
  const trimmed = name.trim();
  if (trimmed === '') throw new AdminError('a role needs a name');
  try {
    const { rows } = await db.query<RoleRow>('insert into core.roles (name) values ($1) returning id, name', [
      trimmed,
    ]);
    return rows[0]!;
  } catch (error) {
    return explainDatabaseError(error, `role "${trimmed}" already exists`);
  }
}

/** Adds a person and their role memberships. Every role must exist already. */
export async function addUser(
  db: Queryable,
  input: { email: string; name: string; roles?: readonly string[] },
): Promise<UserRow> {
  const email = input.email.trim();
  const name = input.name.trim();
  if (!EMAIL_PATTERN.test(email)) throw new AdminError(`"${input.email}" is not an e-mail address`);
  if (name === '') throw new AdminError('a user needs a name');
  const roles = [...new Set((input.roles ?? []).map((role) => role.trim()))];
  try {
    return await inTransaction(db, async (client) => {
      const { rows: found } = await client.query<RoleRow>(
        'select id, name from core.roles where name = any($1::text[])',
        [roles],
      );
      const missing = roles.filter((role) => !found.some((row) => row.name === role));
      if (missing.length > 0) {
        throw new AdminError(
          `${missing.length === 1 ? 'role' : 'roles'} ${missing.map((role) => `"${role}"`).join(', ')} ` +
            `${missing.length === 1 ? 'does' : 'do'} not exist; create ${missing.length === 1 ? 'it' : 'them'} ` +
            `first with \`rulebook role add <name>\``,
        );
      }
      const { rows } = await client.query<{ id: string }>(
        'insert into core.users (email, name) values ($1, $2) returning id',
        [email, name],
      );
      const id = rows[0]!.id;
      await client.query('insert into core.user_roles (user_id, role_id) select $1, unnest($2::uuid[])', [
        id,
        found.map((row) => row.id),
      ]);
      return { id, email, name, roles: found.map((row) => row.name) };
    });
  } catch (error) {
    return explainDatabaseError(error, `a user with e-mail ${email} already exists`);
  }
}

/**
 * The user with this e-mail address (compared without regard to case, an exact match first), or an
 * AdminError saying why there is none. Deactivated users are refused unless `allowInactive`.
 */
export async function findUserByEmail(
  db: Queryable,
  email: string,
  options: { allowInactive?: boolean } = {},
): Promise<{ id: string; email: string }> {
  const wanted = email.trim();
  try {
    const { rows } = await db.query<{ id: string; email: string; is_active: boolean }>(
      `select id, email, is_active from core.users where lower(email) = lower($1)
        order by (email = $1) desc limit 2`,
      [wanted],
    );
    const user = rows[0];
    if (user === undefined) throw new AdminError(`there is no user with e-mail ${wanted}`);
    if (rows.length > 1 && user.email !== wanted) {
      throw new AdminError(`several users have e-mail ${wanted} in different letter case; write it exactly`);
    }
    if (!user.is_active && !options.allowInactive) {
      throw new AdminError(`user ${user.email} is deactivated (core.users.is_active is false)`);
    }
    return { id: user.id, email: user.email };
  } catch (error) {
    return explainDatabaseError(error);
  }
}
