// Adds one send job in the original Node router's format, as the Node server did:
//   node add-job.mjs <redisUrl> <queueName> <jobId> <json of {companyId, phoneIndex, messageData}>
// Prints the job id. Used by tests/integration/test_node_bullmq.py.
import { Queue } from "bullmq";
import IORedis from "ioredis";

const [redisUrl, queueName, jobId, data] = process.argv.slice(2);
const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue(queueName, { connection });
const job = await queue.add("send-message", JSON.parse(data), {
  jobId,
  attempts: 3,
  backoff: { type: "exponential", delay: 2000 },
});
console.log(job.id);
await queue.close();
await connection.quit();
