// Anchor: Node BullMQ no-op processing on the same Redis (argv: redisUrl jobs concurrency).
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

async function main() {
  const [url, jobsArg, concArg] = process.argv.slice(2);
  const jobs = Number(jobsArg);
  const name = `bench-noop-node-${Date.now()}`;
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection });
  const latencies = [];
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  const worker = new Worker(name, async (job) => {
    latencies.push(Date.now() - job.data.t);
    if (latencies.length >= jobs) resolveDone();
  }, { connection: new IORedis(url, { maxRetriesPerRequest: null }), concurrency: Number(concArg),
       removeOnComplete: { count: 0 } });
  const start = process.hrtime.bigint();
  for (let offset = 0; offset < jobs; offset += 500) {
    const n = Math.min(500, jobs - offset);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: { t: Date.now() },
      opts: { removeOnComplete: true } })));
  }
  await done;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  process.stdout.write(JSON.stringify({ jobs, seconds, latencies_ms: latencies }));
  process.exit(0);
}

main().catch((err) => { console.error(err); process.exit(1); });
