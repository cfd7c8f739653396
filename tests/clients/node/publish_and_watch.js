#!/usr/bin/env node
// A real Node gRPC client of corrmesh, loaded from the same .proto files as the
// Python services (no generated code, no mocks).
//
// It opens CorrelationService.WatchGroups from the start of the update stream,
// publishes two events that share a fingerprint through IngestService.Publish,
// and waits until one GroupUpdate carries a group whose members include both
// published events. Then it prints one JSON line and exits 0:
//
//   {"event_ids": [...], "correlation_ids": [...], "group_id": "...",
//    "member_event_ids": [...]}
//
// On a timeout or an error it prints a message on stderr and exits 1.
//
// Usage:
//   node publish_and_watch.js --ingest HOST:PORT --correlation HOST:PORT
//        [--token TOKEN] [--timeout SECONDS] [--protos DIR] [--googleapis DIR]
//   node publish_and_watch.js --check   # load protos, build both clients, exit 0
'use strict';

const crypto = require('crypto');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const DEFAULT_PROTOS_DIR = path.join(REPO_ROOT, 'protos');
const DEFAULT_GOOGLEAPIS_DIR = path.join(REPO_ROOT, 'third_party', 'googleapis');
const PROTO_FILES = ['corrmesh/v1/ingest.proto', 'corrmesh/v1/correlation.proto'];

// Options the task (and DESIGN.md) settle on: int64 arrives as strings.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

const USAGE =
  'usage: publish_and_watch.js --ingest HOST:PORT --correlation HOST:PORT ' +
  '[--token TOKEN] [--timeout SECONDS] [--protos DIR] [--googleapis DIR] [--check]';

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = {
    ingest: '',
    correlation: '',
    token: '',
    timeout: 20,
    protos: DEFAULT_PROTOS_DIR,
    googleapis: DEFAULT_GOOGLEAPIS_DIR,
    check: false,
  };
  const withValue = new Set(['ingest', 'correlation', 'token', 'timeout', 'protos', 'googleapis']);
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--check') {
      opts.check = true;
      continue;
    }
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    }
    if (!arg.startsWith('--')) {
      throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    }
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (!withValue.has(name)) {
      throw new UsageError(`unknown option --${name}`);
    }
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) {
        throw new UsageError(`--${name} needs a value`);
      }
      value = argv[i];
    }
    opts[name] = value;
  }
  opts.timeout = Number(opts.timeout);
  if (!Number.isFinite(opts.timeout) || opts.timeout <= 0) {
    throw new UsageError('--timeout must be a positive number of seconds');
  }
  if (!opts.check) {
    for (const name of ['ingest', 'correlation']) {
      if (!/^.+:\d+$/.test(opts[name])) {
        throw new UsageError(`--${name} HOST:PORT is required (got ${JSON.stringify(opts[name])})`);
      }
    }
  }
  return opts;
}

function loadApi(opts) {
  const packageDefinition = protoLoader.loadSync(PROTO_FILES, {
    ...LOADER_OPTIONS,
    includeDirs: [opts.protos, opts.googleapis],
  });
  const loaded = grpc.loadPackageDefinition(packageDefinition);
  const v1 = loaded.corrmesh && loaded.corrmesh.v1;
  if (!v1 || typeof v1.IngestService !== 'function' || typeof v1.CorrelationService !== 'function') {
    throw new Error('corrmesh.v1.IngestService / CorrelationService not found in the loaded protos');
  }
  return { v1, packageDefinition };
}

function makeClients(v1, opts) {
  const credentials = grpc.credentials.createInsecure();
  // Target strings are only parsed here; no connection is made until a call.
  const ingest = new v1.IngestService(opts.ingest || '127.0.0.1:50051', credentials);
  const correlation = new v1.CorrelationService(opts.correlation || '127.0.0.1:50052', credentials);
  return { ingest, correlation };
}

function nowTimestamp() {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function buildEvents(runId) {
  const fingerprint = `node-client/${runId}`;
  const resource = { kind: 'Deployment', namespace: 'shop', name: 'checkout' };
  return [1, 2].map((n) => ({
    domain: 'DOMAIN_GENERIC',
    source: 'node-client',
    title: `checkout unavailable (node client ${n}/2)`,
    description: `published by the Node client, run ${runId}`,
    severity: 'SEVERITY_ERROR',
    fingerprint,
    type: 'NodeClientProbe',
    occurred_at: nowTimestamp(),
    resource,
    attributes: { client: 'node', run_id: runId },
  }));
}

// --check: proves the protos load and both clients build, and that the two
// calls the real run makes serialize and parse their messages.
function runCheck(opts) {
  const { v1 } = loadApi(opts);
  const { ingest, correlation } = makeClients(v1, opts);
  const publish = v1.IngestService.service.Publish;
  const watch = v1.CorrelationService.service.WatchGroups;
  if (!publish || publish.requestStream || publish.responseStream) {
    throw new Error('IngestService.Publish is not a unary method');
  }
  if (!watch || watch.requestStream || !watch.responseStream) {
    throw new Error('CorrelationService.WatchGroups is not a server-streaming method');
  }
  const request = { events: buildEvents('check') };
  const bytes = publish.requestSerialize(request);
  const back = publish.requestDeserialize(bytes);
  if (back.events.length !== 2 || back.events[0].domain !== 'DOMAIN_GENERIC' ||
      back.events[0].resource.name !== 'checkout' ||
      typeof back.events[0].occurred_at.seconds !== 'string') {
    throw new Error(`PublishRequest round trip lost data: ${JSON.stringify(back.events[0])}`);
  }
  const watchBytes = watch.requestSerialize({ after_sequence: '0' });
  watch.requestDeserialize(watchBytes);
  // A response as the server would send it: a group holding both events.
  const response = watch.responseDeserialize(watchResponseBytes(v1));
  const update = response.updates && response.updates[0];
  if (!update || update.type !== 'GROUP_UPDATE_TYPE_MEMBER_ADDED' || update.sequence !== '7' ||
      memberIds(update.group).join(',') !== 'a,b') {
    throw new Error(`WatchGroupsResponse round trip lost data: ${JSON.stringify(response)}`);
  }
  ingest.close();
  correlation.close();
  const services = ['corrmesh.v1.IngestService', 'corrmesh.v1.CorrelationService'];
  process.stdout.write(JSON.stringify({
    ok: true,
    services,
    methods: {
      'corrmesh.v1.IngestService': Object.keys(v1.IngestService.service),
      'corrmesh.v1.CorrelationService': Object.keys(v1.CorrelationService.service),
    },
    grpc_js: require('@grpc/grpc-js/package.json').version,
    proto_loader: require('@grpc/proto-loader/package.json').version,
  }) + '\n', () => process.exit(0));
}

function watchResponseBytes(v1) {
  // responseSerialize exists for server use; it encodes a plain object.
  const watch = v1.CorrelationService.service.WatchGroups;
  return watch.responseSerialize({
    updates: [{
      sequence: '7',
      type: 'GROUP_UPDATE_TYPE_MEMBER_ADDED',
      group: { group_id: 'g', members: [{ event_id: 'a' }, { event_id: 'b' }] },
      event_ids: ['b'],
    }],
    through_sequence: '7',
  });
}

function memberIds(group) {
  if (!group || !Array.isArray(group.members)) {
    return [];
  }
  return group.members.map((m) => m.event_id).filter((id) => id);
}

function describeError(err) {
  if (err && typeof err.code === 'number') {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || String(err.code);
    return `${name}: ${err.details || err.message}`;
  }
  return err && err.message ? err.message : String(err);
}

function run(opts) {
  const { v1 } = loadApi(opts);
  const { ingest, correlation } = makeClients(v1, opts);
  const metadata = new grpc.Metadata();
  if (opts.token) {
    metadata.set('authorization', `Bearer ${opts.token}`);
  }
  const deadlineMs = Date.now() + opts.timeout * 1000;
  const runId = crypto.randomUUID();

  let finished = false;
  let watchCall = null;
  let reconnectTimer = null;
  let lastThrough = '0';
  let lastWatchError = '';
  let published = null; // {eventIds, correlationIds}
  const pendingUpdates = []; // updates seen before Publish answered

  const timer = setTimeout(() => {
    const what = published
      ? `no GroupUpdate with both events ${JSON.stringify(published.eventIds)} as members`
      : 'Publish did not complete';
    const watchNote = lastWatchError ? ` (last WatchGroups error: ${lastWatchError})` : '';
    fail(`timed out after ${opts.timeout}s: ${what}${watchNote}`);
  }, Math.max(0, deadlineMs - Date.now()));

  function cleanup() {
    clearTimeout(timer);
    if (reconnectTimer) {
      clearTimeout(reconnectTimer);
    }
    if (watchCall) {
      watchCall.cancel();
    }
    ingest.close();
    correlation.close();
  }

  function fail(message) {
    if (finished) return;
    finished = true;
    cleanup();
    process.stderr.write(`publish_and_watch: ${message}\n`);
    process.exitCode = 1;
    setImmediate(() => process.exit(1));
  }

  function succeed(update) {
    if (finished) return;
    finished = true;
    cleanup();
    const line = JSON.stringify({
      event_ids: published.eventIds,
      correlation_ids: published.correlationIds,
      group_id: update.group.group_id,
      member_event_ids: memberIds(update.group),
      update_type: update.type,
      update_sequence: update.sequence,
    });
    process.stdout.write(line + '\n', () => process.exit(0));
  }

  function consider(update) {
    if (finished || !published) return;
    const members = new Set(memberIds(update.group));
    if (published.eventIds.every((id) => members.has(id))) {
      succeed(update);
    }
  }

  function openWatch() {
    if (finished) return;
    // Resumable: after a dropped stream, continue after the last sequence seen.
    watchCall = correlation.WatchGroups(
      { after_sequence: lastThrough },
      metadata,
      { deadline: new Date(deadlineMs + 5000) },
    );
    watchCall.on('data', (response) => {
      if (response.through_sequence && response.through_sequence !== '0') {
        lastThrough = response.through_sequence;
      }
      for (const update of response.updates || []) {
        if (update.sequence && BigInt(update.sequence) > BigInt(lastThrough)) {
          lastThrough = update.sequence;
        }
        if (published) {
          consider(update);
        } else {
          pendingUpdates.push(update);
        }
      }
    });
    watchCall.on('error', (err) => {
      if (finished || err.code === grpc.status.CANCELLED) return;
      lastWatchError = describeError(err);
      if (err.code === grpc.status.UNAVAILABLE && Date.now() < deadlineMs - 500) {
        // The service may still be starting or restarting: resume shortly.
        reconnectTimer = setTimeout(openWatch, 250);
        return;
      }
      fail(`WatchGroups failed: ${describeError(err)}`);
    });
    watchCall.on('end', () => {
      // A server that ends the stream before our group showed up: resume.
      if (!finished && Date.now() < deadlineMs - 500) {
        reconnectTimer = setTimeout(openWatch, 250);
      }
    });
  }

  openWatch();

  const events = buildEvents(runId);
  ingest.Publish(
    { events },
    metadata,
    { deadline: new Date(deadlineMs) },
    (err, response) => {
      if (finished) return;
      if (err) {
        fail(`Publish failed: ${describeError(err)}`);
        return;
      }
      const results = (response && response.results) || [];
      if (results.length !== events.length) {
        fail(`Publish returned ${results.length} results for ${events.length} events`);
        return;
      }
      const rejected = results.filter((r) => r.error && r.error.code);
      if (rejected.length > 0) {
        fail(`Publish rejected events: ${JSON.stringify(rejected)}`);
        return;
      }
      const eventIds = results.map((r) => r.event_id);
      const correlationIds = results.map((r) => r.correlation_id);
      if (eventIds.some((id) => !id)) {
        fail(`Publish returned an empty event_id: ${JSON.stringify(results)}`);
        return;
      }
      published = { eventIds, correlationIds };
      for (const update of pendingUpdates.splice(0)) {
        consider(update);
      }
    },
  );
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`publish_and_watch: ${err.message}\n${USAGE}\n`);
    process.exit(1);
  }
  try {
    if (opts.check) {
      runCheck(opts);
      return;
    }
    run(opts);
  } catch (err) {
    process.stderr.write(`publish_and_watch: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  }
}

main();
