// MicroBank `users`: the user directory. KV layout (namespace `users`):
//   user/<id> → { id, name, createdAt }
// The gateway's `register` route calls `create` with the password already stripped from the body
// and keeps the scrypt hash itself (see themis.yaml `gateway.auth`); this service never sees it.

const USER_ID = /^[a-z0-9_-]{1,32}$/;

export async function create(input, ctx) {
  const body = input.body ?? {};
  if (typeof body.id !== 'string' || !USER_ID.test(body.id)) {
    throw ctx.error(400, 'BAD_REQUEST', 'id must be 1-32 characters of a-z, 0-9, "_" or "-"');
  }
  if (typeof body.name !== 'string' || body.name.length < 1 || body.name.length > 100) {
    throw ctx.error(400, 'BAD_REQUEST', 'name must be a string of 1-100 characters');
  }
  const user = { id: body.id, name: body.name, createdAt: new Date().toISOString() };
  const created = await ctx.kv.transact(async (tx) => {
    if ((await tx.get(`user/${user.id}`)) !== undefined) return false;
    tx.put(`user/${user.id}`, user);
    return true;
  });
  if (!created) throw ctx.error(409, 'USER_EXISTS', `user ${user.id} exists already; choose another id`);
  ctx.log.info('user created', { user: user.id });
  return user;
}

export async function get(input, ctx) {
  const id = input.params.id;
  if (ctx.principal?.subject !== id) throw ctx.error(403, 'FORBIDDEN', 'you can only read your own user');
  const user = await ctx.kv.get(`user/${id}`);
  if (user === undefined) throw ctx.error(404, 'NOT_FOUND', `no user ${id}`);
  return user;
}
