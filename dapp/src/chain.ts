// Reading the escrow for one requester: their JobSubmitted events (filtered by the indexed
// requester topic), the lifecycle events of their jobs (filtered by the indexed job id topic),
// in bounded block ranges so public RPC providers' eth_getLogs limits are respected.
import { decodeEventLog, numberToHex, pad, type Address, type Hex, type PublicClient } from "viem";
import { jobEscrowAbi } from "../../abi/JobEscrow.ts";

/** Largest eth_getLogs range asked for at once. */
const MAX_RANGE = 10_000n;

export interface Submission {
  jobId: bigint;
  payment: bigint;
  deadline: bigint;
  app: string;
  commandLine: string;
  txHash: Hex;
  blockNumber: bigint;
}

export interface ChainEvent {
  jobId: bigint;
  name: string;
  detail: string;
  txHash: Hex;
  blockNumber: bigint;
  logIndex: number;
}

function* ranges(from: bigint, to: bigint): Generator<[bigint, bigint]> {
  for (let start = from; start <= to; start += MAX_RANGE) {
    const end = start + MAX_RANGE - 1n < to ? start + MAX_RANGE - 1n : to;
    yield [start, end];
  }
}

export async function submissionsOf(
  client: PublicClient,
  contract: Address,
  requester: Address,
  from: bigint,
  to: bigint,
): Promise<Submission[]> {
  const found: Submission[] = [];
  for (const [start, end] of ranges(from, to)) {
    const logs = await client.getContractEvents({
      address: contract,
      abi: jobEscrowAbi,
      eventName: "JobSubmitted",
      args: { requester },
      fromBlock: start,
      toBlock: end,
      strict: false,
    });
    for (const log of logs) {
      const args = log.args;
      if (args.jobId === undefined || log.transactionHash === null || log.blockNumber === null) continue;
      found.push({
        jobId: args.jobId,
        payment: args.payment ?? 0n,
        deadline: args.deadline ?? 0n,
        app: args.spec?.app ?? "",
        commandLine: args.spec?.commandLine ?? "",
        txHash: log.transactionHash,
        blockNumber: log.blockNumber,
      });
    }
  }
  return found;
}

function describe(name: string, args: Record<string, unknown>): string {
  switch (name) {
    case "JobSubmitted":
      return `paid ${String(args.payment ?? "")} wei`;
    case "JobAccepted":
      return `remote job ${String(args.remoteJobId ?? "")}`;
    case "JobCompleted":
      return `result hash ${String(args.resultHash ?? "")}`;
    case "JobFailed":
      return String(args.reason ?? "");
    default:
      return "";
  }
}

const LIFECYCLE = new Set([
  "JobSubmitted", "JobAccepted", "JobRunning", "JobCompleted", "JobFailed",
  "JobCancelled", "CancelRequested", "JobExpired", "CallbackFailed",
]);

/** Lifecycle events of `jobIds` in the range (one eth_getLogs per range, by job id topic). */
export async function eventsOf(
  client: PublicClient,
  contract: Address,
  jobIds: bigint[],
  from: bigint,
  to: bigint,
): Promise<ChainEvent[]> {
  if (jobIds.length === 0) return [];
  const idTopics = jobIds.map((id) => pad(numberToHex(id), { size: 32 }));
  const events: ChainEvent[] = [];
  for (const [start, end] of ranges(from, to)) {
    const logs = await client.request({
      method: "eth_getLogs",
      params: [{ address: contract, fromBlock: numberToHex(start), toBlock: numberToHex(end), topics: [null, idTopics] }],
    });
    for (const log of logs) {
      let decoded: { eventName: string; args: Record<string, unknown> };
      try {
        decoded = decodeEventLog({ abi: jobEscrowAbi, data: log.data, topics: log.topics, strict: false }) as unknown as {
          eventName: string;
          args: Record<string, unknown>;
        };
      } catch {
        continue;
      }
      if (!LIFECYCLE.has(decoded.eventName) || log.transactionHash === null || log.blockNumber === null) continue;
      events.push({
        jobId: BigInt(log.topics[1] ?? 0),
        name: decoded.eventName,
        detail: describe(decoded.eventName, decoded.args),
        txHash: log.transactionHash,
        blockNumber: BigInt(log.blockNumber),
        logIndex: Number(log.logIndex ?? 0),
      });
    }
  }
  return events;
}
