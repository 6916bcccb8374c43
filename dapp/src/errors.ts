// Every failure in words: a wallet refusal, missing funds, a contract revert by its custom
// error's name and arguments (decoded by viem against the ABI), an unreachable bridge.
import {
  BaseError,
  ContractFunctionRevertedError,
  InsufficientFundsError,
  UserRejectedRequestError,
  formatEther,
} from "viem";

/** What each of JobEscrow's custom errors means, for the user. */
export const ERROR_MEANINGS: Record<string, string> = {
  EmptyApp: "the app is empty",
  EmptyCommandLine: "the command line is empty",
  AppTooLong: "the app name is longer than the contract allows",
  CommandLineTooLong: "the command line is longer than the contract allows",
  TooManyInputFiles: "there are more input files than the contract allows",
  EmptyInputFile: "an input file has an empty filename or URL",
  InputFileTooLong: "an input file's filename plus URL is too long",
  ZeroVcpus: "a job needs at least one vCPU",
  VcpusOverLimit: "more vCPUs than the contract allows",
  RamOverLimit: "more RAM than the contract allows",
  DiskOverLimit: "more disk than the contract allows",
  NetworkDownloadOverLimit: "more network download than the contract allows",
  NetworkUploadOverLimit: "more network upload than the contract allows",
  ZeroHours: "a job needs at least one hour",
  HoursOverLimit: "more hours than the contract allows",
  CallbackGasOverLimit: "more callback gas than the contract allows",
  PaymentTooLow: "the payment is below the quote (the price may have changed)",
  JobNotFound: "no such job",
  NotRequester: "only the account that submitted the job may do this",
  InvalidTransition: "the job's status does not allow this any more",
  InvalidStatus: "not a status the operator may write",
  CancelNotRequested: "the job was not asked to be cancelled",
  CancelAlreadyRequested: "cancellation was already requested; the bridge is cancelling the job",
  DeadlinePassed: "the job's deadline has passed; reclaim it instead",
  JobNotExpired: "the job's deadline has not passed yet",
  NothingToWithdraw: "there is nothing to withdraw",
  InsufficientGasForCallback: "not enough gas left for the job's callback",
  ZeroResultHash: "a completed job needs a result hash",
  ZeroAddress: "the zero address is not allowed",
  EnforcedPause: "submissions are paused by the operator",
  ExpectedPause: "the contract is not paused",
  LimitAboveCap: "an admin limit above its hard cap",
  AccessControlUnauthorizedAccount: "this account does not hold the role this needs",
  FailedCall: "sending the ether failed",
  ReentrancyGuardReentrantCall: "a reentrant call was refused",
};

/** The bridge's API could not be reached or answered with an error. */
export class BridgeUnreachable extends Error {
  constructor(apiUrl: string, detail: string) {
    super(`The bridge at ${apiUrl} is unreachable (${detail}); job details and result files cannot be loaded.`);
    this.name = "BridgeUnreachable";
  }
}

function formatArg(value: unknown): string {
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "string") return value;
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

function isRejection(error: unknown): boolean {
  return (
    error instanceof UserRejectedRequestError ||
    (typeof error === "object" && error !== null && (error as { code?: unknown }).code === 4001)
  );
}

/** One sentence saying what went wrong. */
export function describeError(error: unknown): string {
  if (error instanceof BridgeUnreachable) return error.message;
  if (isRejection(error)) return "You rejected the request in your wallet; nothing was sent.";
  if (error instanceof BaseError) {
    if (error.walk(isRejection)) return "You rejected the request in your wallet; nothing was sent.";
    const reverted = error.walk((e) => e instanceof ContractFunctionRevertedError);
    if (reverted instanceof ContractFunctionRevertedError) {
      const name = reverted.data?.errorName;
      if (name) {
        const args = (reverted.data?.args ?? []).map(formatArg).join(", ");
        const meaning = ERROR_MEANINGS[name];
        return `The contract refused: ${name}(${args})${meaning ? `: ${meaning}` : ""}.`;
      }
      if (reverted.reason) return `The contract refused: ${reverted.reason}.`;
      return "The contract refused the call without saying why.";
    }
    const funds = error.walk((e) => e instanceof InsufficientFundsError);
    if (funds || /insufficient funds/i.test(error.message)) {
      return "Insufficient funds: your account cannot pay the price plus gas.";
    }
    return error.shortMessage || error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

export function formatWei(wei: bigint): string {
  return `${formatEther(wei)} ETH`;
}
