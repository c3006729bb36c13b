import {
  DEFAULT_EXPIRY,
  createToken,
  formatDate,
  isTokenReference,
  listTokens,
  parseDuration,
  revokeToken,
  tokenTable,
} from '../admin/tokens.js';
import { UsageError, stringOption, type Command } from './command.js';
import { JSON_OPTION } from './common-options.js';

/** The one description of --expires: the help, the usage line and the error all use it. */
const EXPIRES_VALUE = '<30d|12h|45m|2w|never>';
const EXPIRES_FORMAT = 'a number and a unit (m, h, d or w), such as 30d or 12h, or "never"';

export const tokenCreateCommand: Command = {
  name: 'token create',
  usage: `--user <email> [--name <label>] [--expires ${EXPIRES_VALUE}]`,
  summary: `issue an API token for the staff page and API (default expiry ${DEFAULT_EXPIRY});
the token is printed once, as the last line, and only its hash is kept`,
  options: {
    user: { type: 'string', value: '<email>', help: 'the e-mail address of the person it is for' },
    name: { type: 'string', value: '<label>', help: 'a label, such as the device it is for' },
    expires: {
      type: 'string',
      value: EXPIRES_VALUE,
      help: `how long it lives: ${EXPIRES_FORMAT} (default ${DEFAULT_EXPIRY})`,
    },
  },
  async run({ values, output, withPool }) {
    const email = stringOption(values, 'user');
    if (email === undefined) throw new UsageError('token create needs --user');
    const expires = stringOption(values, 'expires') ?? DEFAULT_EXPIRY;
    const expiresInMs = parseDuration(expires);
    if (expiresInMs === undefined)
      throw new UsageError(`--expires takes ${EXPIRES_FORMAT}; got "${expires}"`);
    const name = stringOption(values, 'name');
    const created = await withPool((pool) => createToken(pool, { email, name, expiresInMs }));
    output.line(
      `rulebook: token ${created.id}${created.name ? ` "${created.name}"` : ''} for ${created.userEmail}, ` +
        (created.expiresAt ? `expires ${formatDate(created.expiresAt)}` : 'never expires'),
    );
    output.line('rulebook: copy it now; it is not stored and cannot be shown again:');
    output.line(created.token);
  },
};

export const tokenListCommand: Command = {
  name: 'token list',
  usage: '[--user <email>] [--json]',
  summary: 'tokens with their state (active, expired, revoked); never the secrets',
  options: {
    user: { type: 'string', value: '<email>', help: "only this person's tokens" },
    json: JSON_OPTION,
  },
  async run({ values, output, withPool }) {
    const email = stringOption(values, 'user');
    const tokens = await withPool((pool) => listTokens(pool, { email }));
    if (output.json) return output.document(tokens);
    if (tokens.length === 0) return output.line(`rulebook: no tokens${email ? ` for ${email}` : ''}`);
    for (const line of tokenTable(tokens)) output.line(line);
  },
};

export const tokenRevokeCommand: Command = {
  name: 'token revoke',
  usage: '<token id | token>',
  summary: 'revoke a token at once',
  options: {},
  positionals: { min: 1, max: 1 },
  async run({ positionals, output, withPool }) {
    const reference = positionals[0]!;
    if (!isTokenReference(reference)) {
      throw new UsageError(`"${reference}" is neither a token id (a uuid) nor a token (rbk_...)`);
    }
    const revoked = await withPool((pool) => revokeToken(pool, reference));
    const label = `token ${revoked.id}${revoked.name ? ` "${revoked.name}"` : ''} of ${revoked.userEmail}`;
    output.line(
      revoked.alreadyRevokedAt
        ? `rulebook: ${label} was already revoked on ${formatDate(revoked.alreadyRevokedAt)}`
        : `rulebook: revoked ${label}`,
    );
  },
};
