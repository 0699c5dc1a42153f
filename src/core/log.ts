import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * The default logger: structured JSON (pino) on stderr at the level in THEMIS_LOG_LEVEL,
 * silent when unset so a library never prints on its own. Key material is never passed to
 * a logger; the redaction list is a second line of defence.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'themis',
      level: options.level ?? process.env['THEMIS_LOG_LEVEL'] ?? 'silent',
      redact: { paths: ['*.secret', '*.privateKey', '*.identity.secret', 'secrets'], censor: '[redacted]' },
    },
    pino.destination(2),
  );
}
