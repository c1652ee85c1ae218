module deferscope.test/demo

go 1.19
