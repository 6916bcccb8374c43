// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IJobEscrow} from "../../interfaces/IJobEscrow.sol";

/// @title Specs
/// @notice Builders for job specs: the typical job (a Wolfram Engine one-liner) and strings of a given
/// length for probing the bounds.
library Specs {
    string internal constant APP = "charityengine:wolframengine";
    string internal constant COMMAND_LINE = 'math -run "Print[2+2]" > output/out.txt';
    string internal constant INPUT_FILENAME = "input.csv";
    /// @dev 40 characters.
    string internal constant INPUT_URL = "https://example.org/data/input-00001.csv";

    /// @notice The typical job: 2 vcpus, 512 MB ram and disk, no network quota, 1 hour, one input file.
    function typical() internal pure returns (IJobEscrow.JobSpec memory spec) {
        spec.app = APP;
        spec.commandLine = COMMAND_LINE;
        spec.specs = IJobEscrow.Resources({vcpus: 2, ram: 512, disk: 512, networkDownload: 0, networkUpload: 0});
        spec.maxHours = 1;
        spec.inputFiles = new IJobEscrow.InputFile[](1);
        spec.inputFiles[0] = IJobEscrow.InputFile({filename: INPUT_FILENAME, url: INPUT_URL});
    }

    /// @notice The typical job with `count` input files, each a distinct filename and the typical URL.
    function withInputFiles(uint256 count) internal pure returns (IJobEscrow.JobSpec memory spec) {
        spec = typical();
        spec.inputFiles = new IJobEscrow.InputFile[](count);
        for (uint256 i; i < count; ++i) {
            spec.inputFiles[i] =
                IJobEscrow.InputFile({filename: string.concat("in", _digit(i), ".csv"), url: INPUT_URL});
        }
    }

    /// @notice The typical job with `vcpus` and `maxHours` set.
    function sized(uint16 vcpus, uint16 maxHours) internal pure returns (IJobEscrow.JobSpec memory spec) {
        spec = typical();
        spec.specs.vcpus = vcpus;
        spec.maxHours = maxHours;
    }

    /// @notice A string of `length` bytes ('a', 'b', ... cycling, so odd lengths are not all one byte).
    function filled(uint256 length) internal pure returns (string memory) {
        bytes memory out = new bytes(length);
        for (uint256 i; i < length; ++i) {
            out[i] = bytes1(uint8(0x61 + (i % 26)));
        }
        return string(out);
    }

    function _digit(uint256 i) private pure returns (string memory) {
        bytes memory out = new bytes(2);
        out[0] = bytes1(uint8(0x30 + (i / 10) % 10));
        // forge-lint: disable-next-line(unsafe-typecast)
        out[1] = bytes1(uint8(0x30 + i % 10));
        return string(out);
    }
}
