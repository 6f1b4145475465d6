"""Meteora DLMM's account layouts: `LbPair` (904 bytes), `BinArray` (10 136 bytes), and the
pair's bin-array bitmap."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from solders.pubkey import Pubkey

from order_engine.chain.layouts.codec import (
    ZERO_KEY,
    check_discriminator,
    check_size,
    pack,
    to_pubkey,
)
from order_engine.chain.programs import BIN_ARRAY_DISCRIMINATOR, LB_PAIR_DISCRIMINATOR
from order_engine.venues.math.dlmm import Bin, DlmmParameters, VolatilityState

_U64_MASK = (1 << 64) - 1

# --- Meteora DLMM -------------------------------------------------------------------------------

# [MET IDL v0.12.0] bytemuck repr(C), no alignment gaps, offsets with the discriminator:
#   @8  StaticParameters (32): base_factor u16, filter_period u16, decay_period u16,
#       reduction_factor u16, variable_fee_control u32 @16, max_volatility_accumulator u32 @20,
#       min_bin_id i32 @24, max_bin_id i32 @28, protocol_share u16 @32, base_fee_power_factor u8
#       @34, function_type u8, collect_fee_mode u8, padding [u8;3]
#   @40 VariableParameters (32): volatility_accumulator u32, volatility_reference u32 @44,
#       index_reference i32 @48, padding [u8;4], last_update_timestamp i64 @56, padding [u8;8]
#   @72 bump_seed, bin_step_seed [u8;2] @73, pair_type @75, active_id i32 @76, bin_step u16 @80,
#       status @82, require_base_factor_seed @83, base_factor_seed [u8;2] @84,
#       activation_type @86, creator_pool_on_off_control @87
#   @88 token_x_mint, @120 token_y_mint, @152 reserve_x, @184 reserve_y,
#   @216 protocol_fee {amount_x, amount_y}, @232 padding [u8;32], @264 reward_infos (2 x 144),
#   @552 oracle, @584 bin_array_bitmap [u64;16], @712 last_updated_at i64, @720 padding [u8;32],
#   @752 pre_activation_swap_address, @784 base_key, @816 activation_point u64,
#   @824 pre_activation_duration u64, @832 padding (16), @848 creator,
#   @880 token_mint_x/y_program_flag u8, @882 version u8, @883 reserved [u8;21]  -> 904
_LB_PAIR = struct.Struct(
    "<8sHHHHIIiiHBBB3xIIi4xq8xB2sBiHBB2sBB32s32s32s32sQQ32x288x32s16Qq32x32s32sQQ16x32sBBB21x"
)
LB_PAIR_SIZE = 904
BIN_ARRAY_BITMAP_WORDS = 16
# The pair's own bitmap covers bin-array indexes [-512, 511] (BIN_ARRAY_BITMAP_SIZE) [MET
# commons/src/constants.rs]; beyond that the program needs the bitmap extension account.
BIN_ARRAY_BITMAP_SIZE = 512
_EMPTY_BITMAP = (0,) * BIN_ARRAY_BITMAP_WORDS
LB_PAIR_STATUS_ENABLED = 0


@dataclass(frozen=True)
class LbPair:
    """Meteora DLMM `LbPair` (904 bytes) [MET IDL v0.12.0].

    Field names follow the IDL with the `parameters.` / `v_parameters.` prefixes dropped. Fee
    rates are at 1e9 precision once combined (see `DlmmParameters`); `protocol_share` is in
    basis points; `bin_array_bitmap` is 16 little-endian u64 words whose bit i (of the 1024-bit
    integer) marks bin-array index i - 512 as initialized.
    """

    base_factor: int
    filter_period: int
    decay_period: int
    reduction_factor: int
    variable_fee_control: int
    max_volatility_accumulator: int
    min_bin_id: int
    max_bin_id: int
    protocol_share: int
    base_fee_power_factor: int
    volatility_accumulator: int
    volatility_reference: int
    index_reference: int
    last_update_timestamp: int
    active_id: int
    bin_step: int
    status: int
    token_x_mint: Pubkey
    token_y_mint: Pubkey
    reserve_x: Pubkey
    reserve_y: Pubkey
    oracle: Pubkey
    bin_array_bitmap: tuple[int, ...] = _EMPTY_BITMAP
    bump_seed: int = 0
    pair_type: int = 0
    activation_type: int = 0
    protocol_fee_x: int = 0
    protocol_fee_y: int = 0
    last_updated_at: int = 0
    base_key: Pubkey = ZERO_KEY
    creator: Pubkey = ZERO_KEY
    activation_point: int = 0
    token_mint_x_program_flag: int = 0
    token_mint_y_program_flag: int = 0
    version: int = 0

    def __post_init__(self) -> None:
        bitmap = tuple(self.bin_array_bitmap)
        if len(bitmap) != BIN_ARRAY_BITMAP_WORDS:
            raise ValueError(f"bin_array_bitmap has {BIN_ARRAY_BITMAP_WORDS} u64 words")
        object.__setattr__(self, "bin_array_bitmap", bitmap)

    @property
    def parameters(self) -> DlmmParameters:
        """The pair's static parameters as the pure math wants them."""
        return DlmmParameters(
            bin_step=self.bin_step,
            base_factor=self.base_factor,
            variable_fee_control=self.variable_fee_control,
            filter_period=self.filter_period,
            decay_period=self.decay_period,
            reduction_factor=self.reduction_factor,
            max_volatility_accumulator=self.max_volatility_accumulator,
            protocol_share=self.protocol_share,
            base_fee_power_factor=self.base_fee_power_factor,
        )

    @property
    def volatility(self) -> VolatilityState:
        return VolatilityState(
            volatility_accumulator=self.volatility_accumulator,
            volatility_reference=self.volatility_reference,
            index_reference=self.index_reference,
            last_update_timestamp=self.last_update_timestamp,
        )

    def encode(self) -> bytes:
        return pack(
            "LbPair",
            _LB_PAIR,
            LB_PAIR_DISCRIMINATOR,
            self.base_factor,
            self.filter_period,
            self.decay_period,
            self.reduction_factor,
            self.variable_fee_control,
            self.max_volatility_accumulator,
            self.min_bin_id,
            self.max_bin_id,
            self.protocol_share,
            self.base_fee_power_factor,
            0,  # function_type
            0,  # collect_fee_mode
            self.volatility_accumulator,
            self.volatility_reference,
            self.index_reference,
            self.last_update_timestamp,
            self.bump_seed,
            # The pair PDA's bin-step seed is the bin step, little-endian [MET commons/src/pda.rs].
            self.bin_step.to_bytes(2, "little"),
            self.pair_type,
            self.active_id,
            self.bin_step,
            self.status,
            0,  # require_base_factor_seed
            b"\0\0",  # base_factor_seed
            self.activation_type,
            0,  # creator_pool_on_off_control
            bytes(self.token_x_mint),
            bytes(self.token_y_mint),
            bytes(self.reserve_x),
            bytes(self.reserve_y),
            self.protocol_fee_x,
            self.protocol_fee_y,
            bytes(self.oracle),
            *self.bin_array_bitmap,
            self.last_updated_at,
            bytes(ZERO_KEY),  # pre_activation_swap_address
            bytes(self.base_key),
            self.activation_point,
            0,  # pre_activation_duration
            bytes(self.creator),
            self.token_mint_x_program_flag,
            self.token_mint_y_program_flag,
            self.version,
        )

    @classmethod
    def decode(cls, data: bytes) -> LbPair:
        check_size("LbPair", data, LB_PAIR_SIZE)
        check_discriminator("LbPair", data, LB_PAIR_DISCRIMINATOR)
        v = _LB_PAIR.unpack(data)
        # Not modelled: v[11], v[12] function_type, collect_fee_mode; v[18] bin_step_seed;
        # v[23], v[24] base-factor seed; v[26] creator_pool_on_off_control;
        # v[51] pre_activation_swap_address; v[54] pre_activation_duration.
        return cls(
            base_factor=v[1],
            filter_period=v[2],
            decay_period=v[3],
            reduction_factor=v[4],
            variable_fee_control=v[5],
            max_volatility_accumulator=v[6],
            min_bin_id=v[7],
            max_bin_id=v[8],
            protocol_share=v[9],
            base_fee_power_factor=v[10],
            volatility_accumulator=v[13],
            volatility_reference=v[14],
            index_reference=v[15],
            last_update_timestamp=v[16],
            bump_seed=v[17],
            pair_type=v[19],
            active_id=v[20],
            bin_step=v[21],
            status=v[22],
            activation_type=v[25],
            token_x_mint=to_pubkey(v[27]),
            token_y_mint=to_pubkey(v[28]),
            reserve_x=to_pubkey(v[29]),
            reserve_y=to_pubkey(v[30]),
            protocol_fee_x=v[31],
            protocol_fee_y=v[32],
            oracle=to_pubkey(v[33]),
            bin_array_bitmap=v[34:50],
            last_updated_at=v[50],
            base_key=to_pubkey(v[52]),
            activation_point=v[53],
            creator=to_pubkey(v[55]),
            token_mint_x_program_flag=v[56],
            token_mint_y_program_flag=v[57],
            version=v[58],
        )


# [MET IDL] BinArray: index i64 @8, version u8 @16, padding [u8;7], lb_pair @24, bins[70] @56.
_BIN_ARRAY_HEADER = struct.Struct("<8sqB7x32s")
# One Bin, 144 bytes: amount_x u64 @+0, amount_y u64 @+8, price u128 (Q64.64) @+16, then
# liquidity_supply, fee and order accumulators (not modelled, zero) up to +144.
_BIN = struct.Struct("<QQ16s112x")
BIN_SIZE = 144
MAX_BIN_PER_ARRAY = 70  # [MET commons/src/constants.rs]
BIN_ARRAY_SIZE = _BIN_ARRAY_HEADER.size + MAX_BIN_PER_ARRAY * BIN_SIZE  # 10_136
_EMPTY_BIN_BYTES = bytes(BIN_SIZE)


@dataclass(frozen=True)
class BinArray:
    """Meteora DLMM `BinArray` (10 136 bytes) [MET IDL; commons/src/extensions/bin_array.rs].

    Holds the 70 consecutive bins `index*70 .. index*70+69`; `bins[i]` is
    `(amount_x, amount_y, price_q64)` of bin id `index*70 + i`, and sits at byte 56 + 144*i.
    """

    index: int
    lb_pair: Pubkey
    bins: tuple[tuple[int, int, int], ...]
    version: int = 0

    def __post_init__(self) -> None:
        bins = tuple(tuple(b) for b in self.bins)
        if len(bins) != MAX_BIN_PER_ARRAY or any(len(b) != 3 for b in bins):
            raise ValueError(f"a BinArray holds {MAX_BIN_PER_ARRAY} (amount_x, amount_y, price)")
        object.__setattr__(self, "bins", bins)

    @property
    def first_bin_id(self) -> int:
        return self.index * MAX_BIN_PER_ARRAY

    def non_empty_bins(self) -> Iterable[tuple[int, Bin]]:
        """(bin id, Bin) for every bin holding either token."""
        first = self.first_bin_id
        for offset, (amount_x, amount_y, _) in enumerate(self.bins):
            if amount_x or amount_y:
                yield first + offset, Bin(amount_x, amount_y)

    def encode(self) -> bytes:
        header = pack(
            "BinArray",
            _BIN_ARRAY_HEADER,
            BIN_ARRAY_DISCRIMINATOR,
            self.index,
            self.version,
            bytes(self.lb_pair),
        )
        parts = [header]
        for amount_x, amount_y, price in self.bins:
            if amount_x == amount_y == price == 0:
                parts.append(_EMPTY_BIN_BYTES)  # most bins of most arrays
                continue
            if not 0 <= price < 1 << 128:
                raise ValueError(f"cannot encode BinArray: price {price} is not a u128")
            parts.append(pack("BinArray", _BIN, amount_x, amount_y, price.to_bytes(16, "little")))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> BinArray:
        check_size("BinArray", data, BIN_ARRAY_SIZE)
        check_discriminator("BinArray", data, BIN_ARRAY_DISCRIMINATOR)
        _, index, version, lb_pair = _BIN_ARRAY_HEADER.unpack_from(data)
        view = memoryview(data)[_BIN_ARRAY_HEADER.size :]
        bins = tuple(
            (amount_x, amount_y, int.from_bytes(price, "little"))
            for amount_x, amount_y, price in _BIN.iter_unpack(view)
        )
        return cls(index=index, lb_pair=to_pubkey(lb_pair), bins=bins, version=version)


# --- bin arrays and the bitmap ------------------------------------------------------------------


def bin_array_index(bin_id: int) -> int:
    """The array holding a bin: floor(bin_id / 70), so -1 -> -1 and -70 -> -1 [MET bin_array.rs]."""
    return bin_id // MAX_BIN_PER_ARRAY


def bitmap_with(indexes: Iterable[int]) -> tuple[int, ...]:
    """The LbPair bitmap (16 u64 words) with the given bin-array indexes set.

    Raises `ValueError` for an index outside [-512, 511]: those need the extension account,
    which we do not model.
    """
    value = 0
    for index in indexes:
        if not -BIN_ARRAY_BITMAP_SIZE <= index < BIN_ARRAY_BITMAP_SIZE:
            raise ValueError(f"bin-array index {index} is outside the pair's bitmap")
        value |= 1 << (index + BIN_ARRAY_BITMAP_SIZE)
    return tuple((value >> (64 * word)) & _U64_MASK for word in range(BIN_ARRAY_BITMAP_WORDS))


def bitmap_indexes(bitmap: Sequence[int]) -> list[int]:
    """The bin-array indexes set in an LbPair bitmap, ascending."""
    value = 0
    for word, bits in enumerate(bitmap):
        value |= bits << (64 * word)
    indexes = []
    while value:
        low = value & -value
        indexes.append(low.bit_length() - 1 - BIN_ARRAY_BITMAP_SIZE)
        value ^= low
    return indexes


def swap_bin_array_indexes(pair: LbPair, swap_for_y: bool, limit: int = 3) -> list[int]:
    """Bin arrays to pass to a swap, in walk order [MET commons/src/quote.rs
    `get_bin_array_pubkeys_for_swap`]: from the array holding the active bin, towards lower
    prices for X -> Y and higher for Y -> X, skipping arrays the bitmap says do not exist."""
    start = bin_array_index(pair.active_id)
    existing = bitmap_indexes(pair.bin_array_bitmap)
    if swap_for_y:
        ordered = [i for i in reversed(existing) if i <= start]
    else:
        ordered = [i for i in existing if i >= start]
    return ordered[:limit]
