import { access, mkdir, open } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { jsonOption } from '../options.js';
import { printJson, printLine } from '../output.js';

/**
 * `themis init [DIR]`: a small working app — a manifest, one service (a greeting and a visit
 * counter in the transactional key-value store) and a README — that `themis up DIR` runs.
 */
export function registerInit(program: Command): void {
  program
    .command('init')
    .description('scaffold a small app (themis.yaml, one service, README) that `themis up` runs')
    .argument('[dir]', 'directory to create the app in', '.')
    .addOption(jsonOption())
    .action(async (dir: string, opts: { json?: boolean }) => {
      const root = resolve(dir);
      const name = appName(basename(root));
      await mkdir(join(root, 'services'), { recursive: true });
      const files: [string, string][] = [
        ['themis.yaml', manifest(name)],
        [join('services', 'hello.js'), SERVICE],
        ['README.md', readme(name, dir)],
      ];
      // Write nothing over an existing file, and nothing at all if one exists.
      for (const [file] of files) {
        if (await access(join(root, file)).then(() => true, () => false)) throw new Error(`${join(root, file)} already exists; run \`themis init\` in an empty directory`);
      }
      for (const [file, text] of files) {
        const handle = await open(join(root, file), 'wx');
        try {
          await handle.writeFile(text);
        } finally {
          await handle.close();
        }
      }
      if (opts.json === true) printJson({ dir: root, app: name, files: files.map(([file]) => file) });
      else printLine(`created ${name} in ${root}: ${files.map(([file]) => file).join(', ')}\nrun it with: themis up ${dir}`);
    });
}

/** A valid app name (a-z, 0-9, -) from the directory name. */
function appName(text: string): string {
  const name = text.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  return name === '' ? 'app' : name;
}

function manifest(name: string): string {
  return `# The app manifest: services (one ES module each) and the gateway's HTTP routes.
app: ${name}
trustDomain: ${name}
services:
  hello:
    entry: services/hello.js
    handlers: [greet, visit]
    instances: { min: 0, max: 2 }   # min 0: scaled to zero when idle
    concurrency: 16                 # in-flight requests per instance before another starts
    memoryMb: 32
    timeoutMs: 2000
    idleSeconds: 30
gateway:
  maxBodyBytes: 16384
  timeoutMs: 5000
  routes:
    - { method: GET, path: /hello/:name, to: hello.greet }
    - { method: POST, path: /visits, to: hello.visit }
`;
}

const SERVICE = `// A Themis function module: no imports; every handler named in themis.yaml is an exported async function.
// input = { params, query, body, idempotencyKey }; ctx = { principal, call, error, log, kv, dht }.

export async function greet({ params }, ctx) {
  if (params.name.length > 64) throw ctx.error(400, 'BAD_REQUEST', 'name is longer than 64 characters');
  return { message: \`Hello, \${params.name}!\` };
}

export async function visit(input, ctx) {
  // A serializable transaction: concurrent visits never lose a count.
  const visits = await ctx.kv.transact(async (tx) => {
    const n = ((await tx.get('visits')) ?? 0) + 1;
    tx.put('visits', n);
    return n;
  });
  ctx.log.info('visit', { visits });
  return { visits };
}
`;

function readme(name: string, dir: string): string {
  return `# ${name}

A Themis serverless app. Run it:

\`\`\`sh
npx themis up ${dir} --port 8080
curl http://127.0.0.1:8080/hello/world      # {"message":"Hello, world!"}
curl -X POST http://127.0.0.1:8080/visits   # {"visits":1}
\`\`\`

- \`themis.yaml\` declares the service \`hello\` (entry module, handlers, scaling and limits) and the
  gateway routes. Errors in it are reported with file:line:col.
- \`services/hello.js\` runs in its own V8 isolate per instance; it reaches the outside only through
  \`ctx\` (\`ctx.kv\` is a transactional key-value store, \`ctx.call\` calls another service over the mesh).
- Keys and data live in \`.themis/\` (created on first start; keep it private).
`;
}
