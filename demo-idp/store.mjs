// A file-backed oidc-provider adapter, so that a restart of the demo provider
// keeps sessions, grants and refresh tokens. Invariant: every change is in
// the file (written to a temporary name, then renamed, mode 0600) before the
// call that made it returns; expired records are never returned.
//
// One JSON file and linear scans are enough for a demo site's handful of
// people; a real site uses its own identity provider.

import * as fs from 'node:fs';
import * as path from 'node:path';

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

const nowSeconds = () => Math.floor(Date.now() / 1000);
const copy = (payload) => (payload === undefined ? undefined : structuredClone(payload));

export class FileStore {
  constructor(file) {
    this.file = file;
    this.records = new Map();
    this.#load();
  }

  #load() {
    let text;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return;
      throw err;
    }
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new Error(`${this.file} is not valid JSON; move it away to start with no sessions`, { cause });
    }
    const now = nowSeconds();
    for (const [key, record] of Object.entries(parsed.records ?? {})) {
      if (record.expiresAt === null || record.expiresAt > now) {
        this.records.set(key, record);
      }
    }
  }

  save() {
    const now = nowSeconds();
    for (const [key, record] of this.records) {
      if (record.expiresAt !== null && record.expiresAt <= now) this.records.delete(key);
    }
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${process.pid}.tmp`);
    const body = JSON.stringify({ version: 1, records: Object.fromEntries(this.records) });
    fs.writeFileSync(tmp, body, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
  }

  get(key) {
    const record = this.records.get(key);
    if (!record) return undefined;
    if (record.expiresAt !== null && record.expiresAt <= nowSeconds()) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }

  *live(model) {
    const prefix = `${model}:`;
    for (const key of this.records.keys()) {
      if (key.startsWith(prefix)) {
        const record = this.get(key);
        if (record) yield [key, record];
      }
    }
  }

  adapterFactory() {
    const store = this;
    return (model) => new FileAdapter(model, store);
  }
}

class FileAdapter {
  constructor(model, store) {
    this.model = model;
    this.store = store;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? nowSeconds() + expiresIn : null;
    this.store.records.set(this.key(id), { payload: structuredClone(payload), expiresAt });
    this.store.save();
  }

  // Copies, as a database would give: a caller changing what it found must upsert it.
  async find(id) {
    return copy(this.store.get(this.key(id))?.payload);
  }

  async findByUid(uid) {
    for (const [, record] of this.store.live(this.model)) {
      if (record.payload.uid === uid) return copy(record.payload);
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [, record] of this.store.live(this.model)) {
      if (record.payload.userCode === userCode) return copy(record.payload);
    }
    return undefined;
  }

  async consume(id) {
    const record = this.store.get(this.key(id));
    if (record) {
      record.payload.consumed = nowSeconds();
      this.store.save();
    }
  }

  async destroy(id) {
    if (this.store.records.delete(this.key(id))) this.store.save();
  }

  async revokeByGrantId(grantId) {
    let changed = false;
    for (const model of GRANTABLE) {
      for (const [key, record] of [...this.store.live(model)]) {
        if (record.payload.grantId === grantId) {
          this.store.records.delete(key);
          changed = true;
        }
      }
    }
    if (changed) this.store.save();
  }
}
