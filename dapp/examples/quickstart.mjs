// Use ce-bridge from your own code with viem: submit a Charity Engine job to the JobEscrow paying
// its quote, wait for it to finish on-chain, fetch its result files from the bridge and verify
// them against the on-chain result hash.
//
//   RPC_URL=http://127.0.0.1:8545 CONTRACT=0x... API_URL=http://127.0.0.1:8080 PRIVATE_KEY=0x... \
//     node dapp/examples/quickstart.mjs
//
// In a browser dapp, import { jobEscrowAbi } from "abi/JobEscrow.ts" instead (typed `as const`)
// and use custom(window.ethereum) as the wallet transport.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createPublicClient, createWalletClient, defineChain, http, parseEventLogs } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const { RPC_URL, CONTRACT, API_URL, PRIVATE_KEY } = process.env;
const abi = JSON.parse(readFileSync(new URL("../../abi/JobEscrow.abi.json", import.meta.url), "utf8"));
const STATUS = ["None", "Submitted", "Accepted", "Running", "Completed", "Failed", "Cancelled", "Expired"];

const reader = createPublicClient({ transport: http(RPC_URL) });
const chain = defineChain({
  id: await reader.getChainId(),
  name: "local",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [RPC_URL] } },
});
const account = privateKeyToAccount(PRIVATE_KEY);
const wallet = createWalletClient({ account, chain, transport: http(RPC_URL) });

// 1. Price the job and submit it, paying the quote.
const spec = {
  app: "charityengine:wolframengine",
  commandLine: 'math -run "Print[6*7]" > output/answer.txt',
  specs: { vcpus: 1, ram: 512, disk: 512, networkDownload: 0, networkUpload: 0 }, // MB, as CE
  maxHours: 1,
  inputFiles: [{ filename: "in.txt", url: "https://example.org/in.txt" }],
};
const callbackGasLimit = 0; // a contract requester sets gas for its onJobFinished callback
const price = await reader.readContract({ address: CONTRACT, abi, functionName: "quote", args: [spec, callbackGasLimit] });
const { request } = await reader.simulateContract({
  account, address: CONTRACT, abi, functionName: "submitJob", args: [spec, callbackGasLimit], value: price,
}); // a bad spec fails here with the contract's custom error, e.g. VcpusOverLimit(70000, 64)
const receipt = await reader.waitForTransactionReceipt({ hash: await wallet.writeContract(request) });
const [submitted] = parseEventLogs({ abi, logs: receipt.logs, eventName: "JobSubmitted" });
const jobId = submitted.args.jobId;
console.log(`job ${jobId} submitted, paying ${price} wei`);

// 2. Wait for a terminal status: Completed (4), Failed (5), Cancelled (6) or Expired (7).
let job = await reader.readContract({ address: CONTRACT, abi, functionName: "getJob", args: [jobId] });
while (job.status < 4) {
  await new Promise((resolve) => setTimeout(resolve, 1000));
  job = await reader.readContract({ address: CONTRACT, abi, functionName: "getJob", args: [jobId] });
}
console.log(`job ${jobId} is ${STATUS[job.status]}`);
if (job.status !== 4) process.exit(1);

// 3. Fetch the result files from the bridge and recompute the result hash: one line
//    "<sha256 hex>  <path>\n" per file, sorted by the path's UTF-8 bytes; sha256 of that manifest.
const listing = await (await fetch(`${API_URL}/jobs/${jobId}/outputs/`)).json();
const lines = [];
for (const file of listing.files) {
  const url = `${API_URL}/jobs/${jobId}/outputs/${file.path.split("/").map(encodeURIComponent).join("/")}`;
  const bytes = Buffer.from(await (await fetch(url)).arrayBuffer());
  lines.push({ path: file.path, line: `${createHash("sha256").update(bytes).digest("hex")}  ${file.path}\n` });
}
lines.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
const manifest = lines.map((l) => l.line).join("");
const computed = "0x" + createHash("sha256").update(manifest).digest("hex");
const verified = computed === job.resultHash;
console.log(`${listing.files.length} files; result hash ${job.resultHash} ${verified ? "verified" : `MISMATCH (files give ${computed})`}`);
process.exit(verified ? 0 : 1);
