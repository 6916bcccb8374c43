// The page's settings: ./config.json beside the page (the bridge serves one at /app/config.json;
// a static build copies one in).
import { getAddress, type Address } from "viem";

export interface DappConfig {
  chainId: number;
  /** A public JSON-RPC URL for reads; null: read through the wallet. */
  rpcUrl: string | null;
  contract: Address;
  /** The bridge's HTTP API, without a trailing slash. */
  apiUrl: string;
  /** First block to search for the contract's events. */
  fromBlock: bigint;
  /** Block explorer base URL; links are `${explorerUrl}/tx/${hash}`. */
  explorerUrl: string | null;
}

export async function loadConfig(url = "./config.json"): Promise<DappConfig> {
  let response: Response;
  try {
    response = await fetch(url, { cache: "no-store" });
  } catch {
    throw new Error(`cannot load ${url}: the server is unreachable`);
  }
  if (!response.ok) throw new Error(`cannot load ${url}: HTTP ${response.status}`);
  const raw = (await response.json()) as Record<string, unknown>;
  if (typeof raw.chainId !== "number") throw new Error(`${url}: chainId is missing`);
  if (typeof raw.contract !== "string") throw new Error(`${url}: contract is missing`);
  if (typeof raw.apiUrl !== "string") throw new Error(`${url}: apiUrl is missing`);
  return {
    chainId: raw.chainId,
    rpcUrl: typeof raw.rpcUrl === "string" && raw.rpcUrl ? raw.rpcUrl : null,
    contract: getAddress(raw.contract),
    apiUrl: new URL(raw.apiUrl, document.baseURI).href.replace(/\/+$/, ""),
    fromBlock: BigInt(typeof raw.fromBlock === "number" ? raw.fromBlock : 0),
    explorerUrl: typeof raw.explorerUrl === "string" && raw.explorerUrl ? raw.explorerUrl.replace(/\/+$/, "") : null,
  };
}
