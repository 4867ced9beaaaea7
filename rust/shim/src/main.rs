fn main() {
    boxlite_shim::main();
}
