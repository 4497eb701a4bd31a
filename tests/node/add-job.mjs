// Adds send jobs in the original Node router's format, as the Node server did:
//   node add-job.mjs <redisUrl> <queueName> <jobId> <json of {companyId, phoneIndex, messageData}>
//   node add-job.mjs <redisUrl> <queueName> - <json array of such objects>
// With "-" BullMQ numbers the jobs itself (1, 2, 3 … per queue, as the Node server's were).
// Prints one job id per line. Used by tests/integration/test_node_bullmq.py.
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [redisUrl, queueName, jobId, data] = process.argv.slice(2);
const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue(queueName, { connection });
const parsed = JSON.parse(data);
for (const jobData of Array.isArray(parsed) ? parsed : [parsed]) {
  const opts = { attempts: 3, backoff: { type: "exponential", delay: 2000 } };
  if (jobId !== "-") opts.jobId = jobId;
  const job = await queue.add("send-message", jobData, opts);
  console.log(job.id);
}
await queue.close();
await connection.quit();
