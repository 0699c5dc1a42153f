import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Command } from 'commander';
import { Option } from 'commander';
import { createLogger } from '../../core/log.js';
import { jsonOption, UsageError } from '../options.js';
import { printJson, printLine } from '../output.js';
import { waitForSignal } from '../signals.js';

interface UpOptions {
  port: number;
  host: string;
  data?: string;
  anchor?: string;
  attest: 'code-digest' | 'tpm';
  tpm?: string;
  json?: boolean;
}

/** isolated-vm 5 needs V8 without Node's startup snapshot (FIELD-NOTES "Packages on Node 20"). */
const NODE_FLAG = '--no-node-snapshot';

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('run the app in DIR (themis.yaml): a DHT anchor, the function host and the HTTP gateway, until SIGINT/SIGTERM')
    .argument('[dir]', 'the app directory (holds themis.yaml)', '.')
    .addOption(new Option('--port <n>', 'gateway port (0: any free port)').env('THEMIS_PORT').default(0).argParser(parsePort))
    .addOption(new Option('--host <addr>', 'listen address of the gateway, anchor and instances').env('THEMIS_HOST').default('127.0.0.1'))
    .addOption(new Option('--data <dir>', 'keys and key-value store (default DIR/.themis)').env('THEMIS_DATA'))
    .addOption(new Option('--anchor <addr>', 'join this DHT anchor (ID@tcp://HOST:PORT) instead of starting one').env('THEMIS_ANCHOR'))
    .addOption(new Option('--attest <mode>', 'attestation: code-digest (the endorsement\'s code digest) or tpm (TPM 2.0 quotes; needs --tpm)').choices(['code-digest', 'tpm']).env('THEMIS_ATTEST').default('code-digest'))
    .addOption(new Option('--tpm <where>', 'the TPM for --attest tpm: socket:PATH (a swtpm unix socket) or a device such as /dev/tpmrm0').env('THEMIS_TPM'))
    .addOption(jsonOption())
    .addHelpText('after', '\nWith --attest tpm the derived policy requires TPM attestation and trusts this host\'s AK; opening the TPM resets PCR 16 (docs/attestation.md).')
    .action(async (dir: string, opts: UpOptions) => {
      if (opts.attest === 'tpm' && opts.tpm === undefined) throw new UsageError('--attest tpm needs --tpm socket:PATH or --tpm DEVICE (or THEMIS_TPM), e.g. --tpm /dev/tpmrm0');
      if (!process.execArgv.includes(NODE_FLAG)) {
        process.exitCode = await rerunWithFlag();
        return;
      }
      const { startApp } = await import('../../runtime/index.js');
      const logger = createLogger({ level: process.env['THEMIS_LOG_LEVEL'] ?? 'info', name: 'themis-up' });
      const stopped = waitForSignal(); // before announcing, so a prompt SIGTERM is not missed
      const attestation = opts.attest === 'tpm' ? { mode: 'tpm' as const, tpm: opts.tpm! } : { mode: 'code-digest' as const };
      const app = await startApp({ dir, port: opts.port, host: opts.host, logger, attestation, ...(opts.data === undefined ? {} : { dataDir: opts.data }), ...(opts.anchor === undefined ? {} : { anchor: opts.anchor }) });
      const services = [...app.manifest.services.keys()];
      const attested = { mode: app.attestation.mode, ...(app.attestation.akHash === undefined ? {} : { akHash: app.attestation.akHash }) };
      if (opts.json === true) printJson({ gateway: app.gateway, anchor: app.anchor, bootstrap: app.bootstrap, app: app.manifest.app, owner: app.owner, services, attestation: attested });
      else printLine(`${app.manifest.app} is up: gateway ${app.gateway}, anchor ${app.anchor}, services ${services.join(', ')}, attestation ${attested.mode}${attested.akHash === undefined ? '' : ` (AK ${attested.akHash})`} (Ctrl-C to stop)`);
      await stopped;
      logger.info('shutting down: finishing in-flight requests');
      exitOnSecondSignal();
      await app.close();
      logger.info('stopped');
    });
}

/**
 * A second SIGINT/SIGTERM while draining exits at once. One that follows the first within a second
 * is the same Ctrl-C: the terminal signals the whole process group, and the re-running parent
 * passes its copy on too.
 */
function exitOnSecondSignal(): void {
  const first = Date.now();
  const again = (): void => {
    if (Date.now() - first > 1_000) process.exit(1);
  };
  process.on('SIGINT', again);
  process.on('SIGTERM', again);
}

/** Runs this same command line in a child `node --no-node-snapshot`, passing signals on; resolves with its exit code. */
function rerunWithFlag(): Promise<number> {
  const child = spawn(process.execPath, [NODE_FLAG, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals): void => void child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      // Like a shell: a child ended by a signal exits 128 + its number.
      resolve(code ?? 128 + (signal === null ? 1 : (constants.signals[signal] ?? 1)));
    });
  });
}

function parsePort(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--port expects 0 to 65535, got "${text}"`);
  return n;
}
