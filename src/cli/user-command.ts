import { addUser } from '../admin/users.js';
import { UsageError, stringOption, stringOptions, type Command } from './command.js';

export const userAddCommand: Command = {
  name: 'user add',
  usage: '--email <address> --name <name> [--role <role>]...',
  summary: `add a person (core.users) and their role memberships; each role must
exist already`,
  options: {
    email: { type: 'string', value: '<address>', help: 'their e-mail address (unique)' },
    name: { type: 'string', value: '<name>', help: 'their name as the staff page shows it' },
    role: { type: 'string', multiple: true, value: '<role>', help: 'a role they have; repeat for several' },
  },
  async run({ values, output, withPool }) {
    const email = stringOption(values, 'email');
    const name = stringOption(values, 'name');
    if (email === undefined || name === undefined) throw new UsageError('user add needs --email and --name');
    const user = await withPool((pool) =>
      addUser(pool, { email, name, roles: stringOptions(values, 'role') }),
    );
    const roles =
      user.roles.length > 0
        ? ` with ${user.roles.length === 1 ? 'role' : 'roles'} ${user.roles.join(', ')}`
        : '';
    output.line(`rulebook: added user ${user.email} (${user.id})${roles}`);
  },
};
