import Testing
@testable import Contracts

/// A contract instance that is dropped (a failed call, a call that grew memory, a runtime that
/// pools nothing, a full pool) must free its store and linear memory: a validator drops one for
/// every failed call, for months.
@Suite struct InstanceLifetimeTests {
    @Test func aDroppedInstanceFreesItsStoreAndMemory() throws {
        let rt = ContractRuntime(poolsInstances: false)
        let module = try rt.check(try Examples.module("counter"))
        // The call context sits in the cycle (host functions → context → memory → the store's
        // allocator → host functions): it outlives the instance unless the cycle is cut.
        weak var store: AnyObject?, context: CallContext?
        do {
            let live = try LiveInstance(module, engine: rt.engine, limits: rt.limits)
            store = live.store
            context = live.context
            #expect(store != nil && context != nil)
        }
        #expect(store == nil, "the dropped instance's store is still alive")
        #expect(context == nil, "the dropped instance's host functions, call context and memory are still alive")
    }
}
